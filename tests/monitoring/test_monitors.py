"""Monitors end to end: a real model, its logged training data, a real prediction log, labels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from keel import Client
from keel.demo.data import TARGET, load_churn, split
from keel.errors import InvalidInput, NotFound
from keel.monitoring.feedback import FeedbackStore
from keel.monitoring.models import MonitorSpec
from keel.monitoring.service import MonitorService
from keel.registry.packaging import load_model_dir
from keel.services import Services
from keel.serving.predlog import PredictionLog
from keel.serving.records import PredictionRecord
from keel.store.sql.monitoring import MonitorSql

FEATURES = ["tenure", "monthly_charges", "total_charges"]
NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="module")
def churn() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    return train, production


@pytest.fixture
def setup(
    services: Services, tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame]
) -> tuple[MonitorService, Any, pd.DataFrame, Path]:
    train, production = churn
    client = Client(settings=services.settings)
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    with client.start_run("churn-monitoring") as run:
        run.log_input(train[[*FEATURES, "contract", TARGET]], name="churn-train")
        version = run.log_model(model, registered_name="churn", input_example=train[FEATURES][:5])
    client.set_alias("churn", "champion", version.version)  # type: ignore[union-attr]
    client.close()
    predictions_root = tmp_path / "predictions"

    def loader(item: Any) -> Any:
        return load_model_dir(services.registry.model_dir(item))

    monitors = MonitorService(
        MonitorSql(services.store.engine),
        services.registry,
        services.tracking,
        services.datasets,
        FeedbackStore(tmp_path / "feedback", predictions_root),
        predictions_root,
        loader,
    )
    return monitors, model, production, predictions_root


def _serve(model: Any, rows: pd.DataFrame, root: Path, *, shift: float = 0.0) -> list[str]:
    """Log one prediction per row in the last hour, as the gateway would."""
    rows = rows.assign(tenure=rows["tenure"] + shift)
    proba = model.predict_proba(rows[FEATURES])
    ids = []
    with PredictionLog(root, flush_interval_s=0.05) as log:
        for i, (features, p) in enumerate(
            zip(rows[FEATURES].to_dict("records"), proba, strict=True)
        ):
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


def test_clean_window_is_ok_with_performance_and_estimate(setup: tuple) -> None:
    monitors, model, production, root = setup
    rows = production.head(800)
    ids = _serve(model, rows, root)
    monitors.feedback.submit(
        [{"request_id": i, "label": int(y)} for i, y in zip(ids, rows[TARGET], strict=True)]
    )
    monitors.create(
        MonitorSpec(
            name="churn-weekly",
            model="churn",
            task="classification",
            label_column=TARGET,
            correction="bonferroni",
        )
    )
    run = monitors.run("churn-weekly", now=NOW_MS)
    assert run.status == "ok", run.summary
    assert (run.version, run.n_current, run.n_labelled) == (1, 800, 800)
    assert sorted(run.results["features"]) == sorted(FEATURES)
    assert {d["feature"] for d in run.results["drift"]} == set(FEATURES)
    assert run.results["prediction_drift"]["verdict"] == "no drift"
    realised, estimated = run.results["performance"], run.results["estimated"]
    assert realised["accuracy"] == pytest.approx(
        ((rows[TARGET] == model.predict(rows[FEATURES])).mean()), abs=1e-9
    )
    assert estimated["accuracy"] == pytest.approx(realised["accuracy"], abs=0.05)
    assert monitors.runs("churn-weekly")[0].id == run.id
    assert monitors.get_run("churn-weekly", run.id).results == run.results


def test_drifted_window_alerts_and_names_the_feature(setup: tuple) -> None:
    monitors, model, production, root = setup
    _serve(model, production.head(800), root, shift=24.0)  # every customer two years older
    monitors.create(MonitorSpec(name="churn-drift", model="churn", window="2h"))
    run = monitors.run("churn-drift", now=NOW_MS)
    assert run.status == "alert"
    assert "tenure" in run.summary["drifted"]
    assert run.summary["prediction_drift"] is True
    assert run.seconds > 0 and run.n_reference > 1_000


def test_empty_window_is_insufficient_data_not_an_alarm(setup: tuple) -> None:
    monitors, *_ = setup
    monitors.create(MonitorSpec(name="quiet", model="churn", window="1h"))
    run = monitors.run("quiet", now=NOW_MS)
    assert run.status == "insufficient data" and run.n_current == 0
    assert "fewer than 30" in run.summary["reason"]


def test_sampling_rate_reduces_the_window(setup: tuple) -> None:
    monitors, model, production, root = setup
    _serve(model, production.head(600), root)
    monitors.create(MonitorSpec(name="sampled", model="churn", sampling_rate=0.25))
    assert monitors.run("sampled", now=NOW_MS).n_current == 150


def test_bad_definitions(setup: tuple) -> None:
    monitors, model, production, root = setup
    with pytest.raises(NotFound):
        monitors.create(MonitorSpec(name="m", model="nope"))
    with pytest.raises(NotFound):
        monitors.create(MonitorSpec(name="m", model="churn", reference="missing@3"))
    with pytest.raises(InvalidInput, match="reference: expected name or name@version"):
        monitors.create(MonitorSpec(name="m", model="churn", reference="churn-train@x"))
    for bad in (
        {"window": "7 days"},
        {"sampling_rate": 0},
        {"name": "bad name"},
        {"version": "a b"},
    ):
        with pytest.raises(ValidationError):
            MonitorSpec(**{"name": "m", "model": "churn", **bad})
    _serve(model, production.head(100), root)
    monitors.create(MonitorSpec(name="o", model="churn", overrides={"plan": {"test": "ks"}}))
    with pytest.raises(InvalidInput, match="overrides: not monitored features: plan"):
        monitors.run("o", now=NOW_MS)
    assert monitors.runs("o") == []  # nothing half-written


def test_replace_list_and_delete(setup: tuple) -> None:
    monitors, *_ = setup
    first = monitors.create(MonitorSpec(name="x", model="churn", window="1d"))
    second = monitors.create(MonitorSpec(name="x", model="churn", window="3d"), actor="ana")
    assert second.created_at_ms == first.created_at_ms and second.window == "3d"
    assert [m.name for m in monitors.list_monitors()] == ["x"]
    monitors.delete("x")
    with pytest.raises(NotFound):
        monitors.get("x")
    with pytest.raises(InvalidInput, match="limit"):
        monitors.runs("x", limit=0)
