"""Real data for the trigger tests: a churn model on the telco table, a prediction log
written as the gateway writes it, and labels submitted through feedback."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from keel import Client
from keel.automation.kinds import _KINDS as _registry
from keel.automation.kinds import register_kind
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.services import Services, open_services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

FEATURES = ["tenure", "monthly_charges", "total_charges", "senior_citizen", "paperless_billing"]
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CALLS: list[dict[str, Any]] = []


def record_retrain(_services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """A stand-in ``retrain.run`` that records its arguments (the real kind trains)."""
    CALLS.append(args)
    return {"ok": True}


@contextmanager
def recording_retrain_kind() -> Iterator[None]:
    """The recording ``retrain.run`` while the block runs (tests that count jobs, not
    models); the real kind is registered again afterwards, so later tests that retrain
    for real are not handed the recorder."""
    from keel.automation import retrain  # noqa: F401  (registers the real kind first)

    previous = kinds_registry().get("retrain.run")
    register_kind("retrain.run", record_retrain)
    try:
        yield
    finally:
        if previous is not None:
            kinds_registry()["retrain.run"] = previous


def kinds_registry() -> dict[str, Any]:
    """The job-kind registry (module state of keel.automation.kinds)."""
    return _registry


def churn_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and production rows of the telco churn table."""
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    return train, production


def register_churn(services: Services, train: pd.DataFrame) -> LogisticRegression:
    """churn v1 @champion: a logistic model with its training data logged as the reference."""
    client = Client(settings=services.settings)
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    with client.start_run("churn-triggers") as run:
        run.log_input(train[[*FEATURES, TARGET]], name="churn-train")
        version = run.log_model(model, registered_name="churn", input_example=train[FEATURES][:5])
    client.set_alias("churn", "champion", version.version)  # type: ignore[union-attr]
    client.close()
    return model


def serve(
    services: Services,
    model: Any,
    rows: pd.DataFrame,
    start_ms: int,
    end_ms: int,
    *,
    prefix: str,
    version: int = 1,
) -> list[str]:
    """Log one prediction per row, spread evenly over ``[start_ms, end_ms)``; request ids."""
    root = log_root(services.settings)
    proba = model.predict_proba(rows[FEATURES])
    step = (end_ms - start_ms) / max(len(rows), 1)
    ids = []
    with PredictionLog(root, flush_interval_s=0.05) as log:
        for i, (features, p) in enumerate(
            zip(rows[FEATURES].to_dict("records"), proba, strict=True)
        ):
            request_id = f"{prefix}{i}"
            ids.append(request_id)
            log.append(
                PredictionRecord(
                    request_id=request_id,
                    at_ms=int(start_ms + i * step),
                    model="churn",
                    version=version,
                    features=features,
                    output=int(p[1] >= 0.5),
                    probabilities=[float(p[0]), float(p[1])],
                    latency_ms=1.0,
                )
            )
        assert log.flush()
    return ids


def label(services: Services, ids: list[str], labels: Any) -> None:
    """Submit ground truth for logged predictions."""
    items = [{"request_id": r, "label": int(y)} for r, y in zip(ids, labels, strict=True)]
    services.feedback.submit(items)


def shifted(rows: pd.DataFrame) -> pd.DataFrame:
    """A covariate shift of three features (longer tenure, higher charges)."""
    return rows.assign(
        tenure=rows["tenure"] + 24,
        monthly_charges=rows["monthly_charges"] * 1.4,
        total_charges=rows["total_charges"] * 2.0,
    )


def now_ms() -> int:
    """A moment after every label submitted so far was received."""
    return int(time.time() * 1000) + 1_000


def flipped(labels: Any, share: float, seed: int = 0) -> np.ndarray:
    """Labels with ``share`` of them flipped (a concept change the inputs do not show)."""
    values = np.asarray(labels).copy()
    rng = np.random.default_rng(seed)
    flip = rng.random(values.size) < share
    values[flip] = 1 - values[flip]
    return values


# -- fixtures (imported by the trigger test modules) ----------------------------------------
@pytest.fixture(scope="session")
def churn_rows() -> tuple[Any, Any]:
    return churn_frames()


@pytest.fixture(scope="session")
def trigger_template(tmp_path_factory: pytest.TempPathFactory, churn_rows: tuple[Any, Any]) -> Path:
    """A home with churn v1 @champion and a week of unshifted, labelled traffic, built once
    per module and copied by each test (its store, artifacts, log and labels)."""
    home = tmp_path_factory.mktemp("trigger-trigger_template") / "keel"
    services = open_services(Settings(home=home))
    train, production = churn_rows
    model = register_churn(services, train)
    now = now_ms()
    rows = production.iloc[:1000]
    ids = serve(services, model, rows, now - 7 * DAY_MS, now - HOUR_MS, prefix="a")
    label(services, ids, rows[TARGET])
    services.close()
    return home


@pytest.fixture
def trigger_env(trigger_template: Path, tmp_path: Path) -> Iterator[tuple[Services, Any]]:
    """Services over a copy of the trigger_template home, and the champion model."""
    home = tmp_path / "keel"
    shutil.copytree(trigger_template, home)
    services = open_services(Settings(home=home))
    with recording_retrain_kind():
        CALLS.clear()
        version = services.registry.resolve("models:/churn@champion")
        yield services, services.monitors.load_model(version)
        services.close()
