"""Monitors end to end: a real model, its logged training data, a real prediction log, labels."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError
from tests.features.conftest import write_seed
from tests.monitoring.conftest import FEATURES, NOW_MS, serve_rows

from keel.demo.data import TARGET
from keel.errors import InvalidInput, NotFound
from keel.monitoring.feedback import FeedbackStore
from keel.monitoring.models import MonitorSpec
from keel.monitoring.service import MonitorService
from keel.registry.packaging import load_model_dir
from keel.services import Services
from keel.store.sql.monitoring import MonitorSql


@pytest.fixture
def setup(
    services: Services, tmp_path: Path, churn: tuple[pd.DataFrame, pd.DataFrame], churn_model: Any
) -> tuple[MonitorService, Any, pd.DataFrame, Path]:
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
    return monitors, churn_model, churn[1], predictions_root


def test_clean_window_is_ok_with_performance_and_estimate(setup: tuple) -> None:
    monitors, model, production, root = setup
    rows = production.head(800)
    ids = serve_rows(model, rows, root)
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
    delay = run.results["label_delay_s"]
    since_import = time.time() - NOW_MS / 1000  # rows were stamped relative to NOW_MS
    assert 0 < delay["median"] <= delay["p90"] <= delay["max"] < 3_000 + since_import + 5
    assert monitors.runs("churn-weekly")[0].id == run.id
    assert monitors.get_run("churn-weekly", run.id).results == run.results


def test_drifted_window_alerts_and_names_the_feature(setup: tuple) -> None:
    monitors, model, production, root = setup
    serve_rows(model, production.head(800), root, shift=24.0)  # every customer two years older
    monitors.create(MonitorSpec(name="churn-drift", model="churn", window="2h"))
    run = monitors.run("churn-drift", now=NOW_MS)
    assert run.status == "alert"
    assert "tenure" in run.summary["drifted"]
    assert run.summary["prediction_drift"] is True
    assert run.seconds > 0 and run.n_reference > 1_000
    diagnosis = monitors.diagnose("churn-drift", run.id)
    assert diagnosis.verdict == "data drift", diagnosis.as_dict()
    assert diagnosis.attributions and diagnosis.attributions[0].feature == "tenure"


def test_slices_rank_the_segment_that_drifted_first(setup: tuple) -> None:
    monitors, model, production, root = setup
    rows = production.head(900).copy()
    monthly = rows["contract"].astype(str) == "Month-to-month"
    rows.loc[monthly, "tenure"] = rows.loc[monthly, "tenure"] + 24  # only one segment moved
    serve_rows(model, rows, root, extra=("contract",))
    monitors.create(MonitorSpec(name="sliced", model="churn", slices=["contract"]))
    run = monitors.run("sliced", now=NOW_MS)
    first = run.results["slices"][0]
    assert (first["column"], first["value"]) == ("contract", "Month-to-month")
    assert "tenure" in first["drifted"]
    others = [s for s in run.results["slices"] if s["value"] != "Month-to-month"]
    assert all("tenure" not in s["drifted"] for s in others)
    with pytest.raises(InvalidInput, match="slices: not in the reference .*'region'"):
        monitors.create(MonitorSpec(name="bad-slice", model="churn", slices=["region"]))


def test_stale_feature_view_raises_an_alert(
    setup: tuple, services: Services, tmp_path: Path
) -> None:
    monitors, model, production, root = setup
    seed = write_seed(tmp_path / "features")
    services.features.apply(seed.defs)
    # The seed's usage data ends in January 2026: materialised, it is months past its 2 h SLA.
    services.features.materialize("2026-01-01", "2026-01-06", ["customer_usage"])
    monitors.freshness_source = services.features.freshness
    serve_rows(model, production.head(200), root)
    monitors.create(MonitorSpec(name="fresh", model="churn", feature_views=["customer_usage"]))
    run = monitors.run("fresh", now=NOW_MS)
    assert run.status == "alert" and run.summary["stale_sources"] == ["customer_usage"]
    (record,) = run.results["freshness"]
    assert record["is_stale"] and record["age_s"] > record["sla_s"] == 7_200
    diagnosis = monitors.diagnose("fresh", run.id)
    assert diagnosis.scores["upstream staleness"] == 1.0
    with pytest.raises(NotFound, match="unknown feature views: nope"):
        monitors.create(MonitorSpec(name="x", model="churn", feature_views=["nope"]))
    monitors.freshness_source = None
    with pytest.raises(InvalidInput, match="feature_views: no feature store"):
        monitors.create(MonitorSpec(name="y", model="churn", feature_views=["customer_usage"]))


def test_empty_window_is_insufficient_data_not_an_alarm(setup: tuple) -> None:
    monitors, *_ = setup
    monitors.create(MonitorSpec(name="quiet", model="churn", window="1h"))
    run = monitors.run("quiet", now=NOW_MS)
    assert run.status == "insufficient data" and run.n_current == 0
    assert "fewer than 30" in run.summary["reason"]


def test_sampling_rate_reduces_the_window(setup: tuple) -> None:
    monitors, model, production, root = setup
    serve_rows(model, production.head(600), root)
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
    serve_rows(model, production.head(100), root)
    with pytest.raises(InvalidInput, match="overrides: not in the monitored features: 'plan'"):
        monitors.create(MonitorSpec(name="o", model="churn", overrides={"plan": {"test": "ks"}}))
    assert monitors.list_monitors() == []  # nothing half-written


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
