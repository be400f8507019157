"""Shared set-up of the monitoring tests: a churn model, its training data, served rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from keel import Client
from keel.demo.data import TARGET, load_churn, split
from keel.services import Services
from keel.serving.predlog import PredictionLog
from keel.serving.records import PredictionRecord

FEATURES = ["tenure", "monthly_charges", "total_charges"]
NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="session")
def churn() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and production rows of the telco churn table."""
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    return train, production


@pytest.fixture
def churn_model(services: Services, churn: tuple[pd.DataFrame, pd.DataFrame]) -> Any:
    """A logistic churn model registered as churn v1 @champion, trained on logged data."""
    train, _ = churn
    client = Client(settings=services.settings)
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    with client.start_run("churn-monitoring") as run:
        run.log_input(train[[*FEATURES, "contract", TARGET]], name="churn-train")
        version = run.log_model(model, registered_name="churn", input_example=train[FEATURES][:5])
    client.set_alias("churn", "champion", version.version)  # type: ignore[union-attr]
    client.close()
    return model


def serve_rows(
    model: Any,
    rows: pd.DataFrame,
    root: Path,
    *,
    shift: float = 0.0,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """Log one prediction per row in the last hour, as the gateway would; returns request ids.

    ``shift`` is added to tenure; ``extra`` columns are logged as features too.
    """
    rows = rows.assign(tenure=rows["tenure"] + shift)
    proba = model.predict_proba(rows[FEATURES])
    ids = []
    with PredictionLog(root, flush_interval_s=0.05) as log:
        logged = rows[[*FEATURES, *extra]].astype({c: str for c in extra})
        records = zip(logged.to_dict("records"), proba, strict=True)
        for i, (features, p) in enumerate(records):
            ids.append(f"r{i}")
            log.append(
                PredictionRecord(
                    request_id=f"r{i}",
                    at_ms=NOW_MS - 3_000_000 + i * 1_000,
                    model="churn",
                    version=1,
                    features=features,
                    output=int(p[1] >= 0.5),
                    probabilities=[float(p[0]), float(p[1])],
                    latency_ms=1.0,
                )
            )
        assert log.flush()
    return ids
