"""Monitor runs: performance drops, quiet windows, the run's own diagnosis, unit changes.

Hardening #15.15 (drops against the reference level), #15.16 (quiet windows),
#15.17 (diagnosis of the run's own window), #15.18 (concept drift on the same
rows), #15.20 (a column wholly out of range is a quality break).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from tests.monitoring.conftest import FEATURES, NOW_MS, serve_rows

from keel import Client
from keel.demo.data import TARGET
from keel.monitoring.feedback import FeedbackStore
from keel.monitoring.models import MonitorSpec
from keel.monitoring.service import MonitorService
from keel.registry.packaging import load_model_dir
from keel.services import Services
from keel.serving.predlog import PredictionLog
from keel.serving.records import PredictionRecord
from keel.store.sql.monitoring import MonitorSql

LABELLED = {"task": "classification", "label_column": TARGET, "correction": "bonferroni"}


@pytest.fixture
def monitors(services: Services, tmp_path: Path, churn_model: Any) -> MonitorService:
    root = tmp_path / "predictions"
    return MonitorService(
        MonitorSql(services.store.engine),
        services.registry,
        services.tracking,
        services.datasets,
        FeedbackStore(tmp_path / "feedback", root),
        root,
        lambda item: load_model_dir(services.registry.model_dir(item)),
    )


def _serve(monitors: MonitorService, model: Any, rows: pd.DataFrame) -> list[str]:
    return serve_rows(model, rows, monitors.inputs.predictions_root)


def _label(monitors: MonitorService, ids: list[str], labels: Any) -> None:
    monitors.feedback.submit(
        [{"request_id": i, "label": y} for i, y in zip(ids, labels, strict=True)]
    )


def test_quiet_windows_are_stored_never_raised(
    monitors: MonitorService, churn_model: Any, churn: tuple
) -> None:
    monitors.create(MonitorSpec(name="quiet", model="churn", **LABELLED))
    empty = monitors.run("quiet", now=NOW_MS)  # no predictions at all: used to raise
    assert empty.status == "insufficient data" and empty.n_current == 0
    production = churn[1]
    stayers = production[production[TARGET] == 0].head(200)
    ids = _serve(monitors, churn_model, stayers)
    unlabelled = monitors.run("quiet", now=NOW_MS)
    assert unlabelled.status in ("ok", "alert") and unlabelled.n_labelled == 0
    assert unlabelled.results["performance"]["verdict"] == "insufficient data"
    assert unlabelled.results["estimated"]["accuracy"] is not None
    _label(monitors, ids, [0] * len(ids))  # one class only
    one_class = monitors.run("quiet", now=NOW_MS)
    assert one_class.n_labelled == 200 and one_class.results["performance"]["roc_auc"] is None
    assert one_class.results["concept_drift"]["n"] == 200
    _label(monitors, ids[:50], ["stayed"] * 50)  # a correction to labels that are not numbers
    words = monitors.run("quiet", now=NOW_MS)
    assert words.results["performance"]["n"] == 150
    assert "not a number" in words.results["performance_notes"][0]


def test_realised_drop_against_the_reference_level_alerts(
    monitors: MonitorService, churn_model: Any, churn: tuple
) -> None:
    rows = churn[1].head(400)
    ids = _serve(monitors, churn_model, rows)
    flip = np.random.default_rng(0).random(len(rows)) < 0.25  # accuracy falls by ~0.15
    _label(monitors, ids, np.where(flip, 1 - rows[TARGET], rows[TARGET]).tolist())
    monitors.create(MonitorSpec(name="drop", model="churn", **LABELLED))
    run = monitors.run("drop", now=NOW_MS)
    assert run.status == "alert" and "realised accuracy dropped" in run.summary["performance"]
    reference = run.results["reference_performance"]
    (accuracy,) = [
        d
        for d in run.results["performance_drops"]
        if (d["metric"], d["basis"]) == ("accuracy", "realised")
    ]
    assert accuracy["reference"] == reference["accuracy"] and accuracy["drop"] > 0.1
    assert accuracy["allowed"] == 0.05 and accuracy["pvalue"] < 0.01
    # Per monitor: a looser threshold (absolute or relative) does not alert on the same rows.
    loose = {"accuracy": {"drop": 0.3}, "roc_auc": {"relative_drop": 0.5}}
    monitors.create(
        MonitorSpec(name="loose", model="churn", performance_thresholds=loose, **LABELLED)
    )
    relaxed = monitors.run("loose", now=NOW_MS)
    assert not any(d["alert"] for d in relaxed.results["performance_drops"])


def test_estimated_drop_alerts_before_labels_arrive(
    monitors: MonitorService, churn_model: Any, churn: tuple
) -> None:
    production = churn[1]
    score = churn_model.predict_proba(production[FEATURES])[:, 1]
    hard = production[(score > 0.3) & (score < 0.7)].head(300)  # a shift to uncertain customers
    _serve(monitors, churn_model, hard)
    monitors.create(MonitorSpec(name="estimate", model="churn", **LABELLED))
    run = monitors.run("estimate", now=NOW_MS)
    assert run.n_labelled == 0 and "estimated accuracy dropped" in run.summary["performance"]
    monitors.create(MonitorSpec(name="off", model="churn", performance_thresholds={}, **LABELLED))
    assert monitors.run("off", now=NOW_MS).results["performance_drops"] == []


def test_diagnosis_reads_the_runs_own_window_and_labels_only_for_concept_drift(
    monitors: MonitorService, churn_model: Any, churn: tuple
) -> None:
    production = churn[1]
    old = production.head(300)
    shifted = production.iloc[300:900].assign(tenure=lambda f: f["tenure"] + 24)
    ids = _serve(monitors, churn_model, pd.concat([old, shifted]))
    _label(monitors, ids[:300], old[TARGET].tolist())  # only the older rows have labels yet
    monitors.create(MonitorSpec(name="late", model="churn", **LABELLED))
    run = monitors.run("late", now=NOW_MS)
    assert run.status == "alert" and "tenure" in run.summary["drifted"]
    diagnosis = monitors.diagnose("late", run.id)
    assert diagnosis.verdict == "data drift", diagnosis.as_dict()
    assert any("the 300 rows labelled so far" in n for n in diagnosis.notes)
    # The run and its diagnosis judge concept drift on the same 300 rows.
    concept = run.results["concept_drift"]
    assert concept["n"] == 300 and not concept["drift"]
    monitor = monitors.get("late")
    version = monitors.inputs.version(monitor)
    base = monitors.performance.baseline(
        monitor, version, monitors.inputs.reference(monitor, version)
    )
    assert base is not None and base.estimator is not None
    labelled_scores = churn_model.predict_proba(old[FEATURES])[:, 1]
    expected = base.estimator.expected_correct(labelled_scores).mean()
    assert concept["expected_accuracy"] == pytest.approx(expected, abs=1e-9)


def test_a_column_wholly_out_of_range_is_a_quality_break(
    monitors: MonitorService, churn_model: Any, churn: tuple
) -> None:
    rows = churn[1].head(400)
    _serve(monitors, churn_model, rows.assign(monthly_charges=rows["monthly_charges"] * 100))
    monitors.create(MonitorSpec(name="units", model="churn"))
    run = monitors.run("units", now=NOW_MS)
    assert run.status == "alert"
    assert "out_of_range:monthly_charges" in run.summary["quality_errors"]
    diagnosis = monitors.diagnose("units", run.id)
    assert diagnosis.verdict == "data-quality break", diagnosis.as_dict()
    assert any("monthly_charges" in e and "data quality" in e for e in diagnosis.evidence)
    monitors.create(MonitorSpec(name="lenient", model="churn", out_of_range_error_share=1.0))
    lenient = monitors.run("lenient", now=NOW_MS)
    assert "out_of_range:monthly_charges" not in lenient.summary["quality_errors"]


def test_regression_error_rise_against_the_reference_level_alerts(
    monitors: MonitorService, services: Services, churn: tuple
) -> None:
    inputs, target = ["tenure", "total_charges"], "monthly_charges"
    train, production = churn
    client = Client(settings=services.settings)
    model = LinearRegression().fit(train[inputs], train[target])
    with client.start_run("charges") as run:
        run.log_input(train[[*inputs, target]], name="charges-train")
        version = run.log_model(model, registered_name="charges", input_example=train[inputs][:5])
    client.set_alias("charges", "champion", version.version)  # type: ignore[union-attr]
    rows = production.head(300)
    predicted = model.predict(rows[inputs])
    with PredictionLog(monitors.inputs.predictions_root, flush_interval_s=0.05) as log:
        for i, (features, y) in enumerate(
            zip(rows[inputs].to_dict("records"), predicted, strict=True)
        ):
            log.append(
                PredictionRecord(
                    request_id=f"c{i}",
                    at_ms=NOW_MS - 3_000_000 + i * 1_000,
                    model="charges",
                    version=1,
                    features=features,
                    output=float(y),
                    latency_ms=1.0,
                )
            )
        assert log.flush()
    truth = rows[target] + np.where(np.arange(len(rows)) % 2, 15.0, -15.0)  # errors grow
    _label(monitors, [f"c{i}" for i in range(len(rows))], truth.tolist())
    spec = MonitorSpec(name="charges", model="charges", task="regression", label_column=target)
    monitors.create(spec)
    result = monitors.run("charges", now=NOW_MS)
    assert result.results["reference_performance"]["mae"] > 0
    assert "realised mae dropped" in result.summary["performance"]
    assert "concept_drift" not in result.results and "estimated" not in result.results
    client.close()
