"""Shared set-up of the decision-log tests: a real rollback incident on two churn models.

The churn models are logged with their training data (the monitors' default reference)
and deployed as a canary that is rolled back through the deployment service, as the
deployment tests do; the prediction log gets rows whose null share the tests choose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.deploy.conftest import POLICY
from tests.security.conftest import auth_server, auth_services, auth_settings  # noqa: F401

from keel import Client
from keel.decisions.models import Decision
from keel.demo.data import TARGET, load_churn, split
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

FEATURES = ["tenure", "monthly_charges", "total_charges"]
NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="session")
def churn_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and production rows of the telco churn table."""
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    return train, production


@dataclass
class Incident:
    """The rolled-back deployment's ``rollback`` decision and the served model."""

    decision: Decision
    model: Any
    production: pd.DataFrame


def register_churn(services: Services, train: pd.DataFrame, owner: str | None = None) -> Any:
    """churn v1 (champion) and v2, both logged with their training data; returns v1's model."""
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    noisy = LogisticRegression(max_iter=2_000).fit(train[FEATURES[:1]].assign(
        monthly_charges=0.0, total_charges=0.0), train[TARGET])  # fmt: skip
    with Client(settings=services.settings) as client:
        if owner is not None:
            client.create_model("churn", owner=owner)
        with client.start_run("incidents", capture_env=False) as run:
            run.log_input(train[[*FEATURES, TARGET]], name="churn-train")
            for fitted in (model, noisy):
                run.log_model(fitted, registered_name="churn", input_example=train[FEATURES][:5])
        client.set_alias("churn", "champion", 1)
    return model


def roll_back(services: Services) -> Decision:
    """Create the canary deployment and roll it back; the ``rollback`` decision."""
    services.deployments.create(POLICY, actor="ana")
    services.deployments.rollback("churn-live", "canary p99 latency doubled", "ana")
    (decision,) = services.decisions.query(model="churn", kind="rollback")
    return decision


@pytest.fixture
def incident(services: Services, churn_frames: tuple[pd.DataFrame, pd.DataFrame]) -> Incident:
    """A real rollback of churn's canary, open."""
    train, production = churn_frames
    model = register_churn(services, train)
    return Incident(roll_back(services), model, production)


def serve(services: Services, model: Any, rows: pd.DataFrame, null_rows: int = 0) -> float:
    """Log one prediction per row in the last hour (``total_charges`` missing on the first
    ``null_rows``), as the gateway would; returns the logged null share of total_charges."""
    rows = rows[FEATURES].copy()
    proba = model.predict_proba(rows)[:, 1]
    logged = rows.astype(object)
    logged.iloc[:null_rows, FEATURES.index("total_charges")] = None
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05) as log:
        for i, (features, p) in enumerate(zip(logged.to_dict("records"), proba, strict=True)):
            log.append(
                PredictionRecord(
                    request_id=f"r{NOW_MS}-{i}",
                    at_ms=NOW_MS - 3_000_000 + i * 1_000,
                    model="churn",
                    version=1,
                    features=features,
                    output=int(p >= 0.5),
                    probabilities=[float(1 - p), float(p)],
                    latency_ms=1.0,
                )
            )
        assert log.flush()
    return float(logged["total_charges"].isna().mean())
