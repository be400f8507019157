"""The retrain.run job on the telco churn table: a logged prediction log + feedback, a real
train function imported by path, the version registered with lineage, gates, promotion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tests.automation.retrain_train as user_code
from tests.automation.conftest import drain

from keel import Client
from keel._models import now_ms
from keel.automation.retrain import job_key
from keel.automation.retrain.data import TS_COLUMN
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.config import Settings
from keel.demo.data import load_churn
from keel.errors import InvalidInput
from keel.services import Services, open_services
from keel.serving._segments import BASE_SCHEMA
from keel.serving.predlog import log_root, partition_dir, write_segment

FEATURES = ["tenure", "monthly_charges", "senior_citizen", "contract", "internet_service"]
TRAIN = "tests.automation.retrain_train:train"
BROKEN = "tests.automation.retrain_train:broken"
DAY_MS = 86_400_000
#: Gates a retrained model on the same features passes (latency is not under test on a busy
#: box; the logistic model has no imputer, so the stress rows' NaN would fail it).
QUIET_GATES = {
    "latency": {"enabled": False},
    "equivalence": {"enabled": False},
    "stress": {"enabled": False},
    "skew": {"enabled": False},
    "margin": {"min_improvement": -0.05},
    "floor": {"min_auc": 0.6},
}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    register_retrain_kind()  # the trigger tests swap in a recording stub
    services = open_services(Settings(home=tmp_path / "keel"))
    yield services
    services.close()


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return load_churn()[["customer_id", *FEATURES, "churn"]].head(2400).reset_index(drop=True)


def register_champion(svc: Services, rows: pd.DataFrame) -> int:
    """v1 of ``churn``, trained on ``rows``, as champion."""
    model = user_code.train(rows[[*FEATURES, "churn"]], {})
    client = Client(settings=svc.settings)
    with client.start_run("seed", capture_env=False) as run:
        version = run.log_model(model, registered_name="churn", input_example=rows[FEATURES][:5])
    client.set_alias("churn", "champion", version.version)
    client.close()
    return int(version.version)


def log_days(
    svc: Services, rows: pd.DataFrame, start_ms: int, days: int, step_ms: int = 1000, **cols: str
) -> list[str]:
    """``rows`` logged as churn v1 predictions spread over ``days`` days from ``start_ms``,
    labelled through the feedback API; the request ids, oldest first."""
    root = log_root(svc.settings)
    ids = [f"r{start_ms}-{i}" for i in range(len(rows))]
    per_day = -(-len(rows) // days)
    for day in range(days):
        part = rows.iloc[day * per_day : (day + 1) * per_day]
        at = start_ms + day * DAY_MS
        table = {
            "ts": pa.array(
                [at + i * step_ms for i in range(len(part))], pa.timestamp("ms", tz="UTC")
            ),
            "request_id": ids[day * per_day : day * per_day + len(part)],
            "output": [0.5] * len(part),
        }
        for column in BASE_SCHEMA:  # every logged column, as the gateway writes them
            if column.name not in table:
                value = cols.get(column.name)
                table[column.name] = pa.array([value] * len(part), column.type)
        for name in FEATURES:
            values = part[name]
            table[f"f_{name}"] = values.astype(str) if values.dtype.name == "category" else values
        write_segment(pa.table(table), partition_dir(root, "churn", 1, at), f"part-{at}.parquet")
    svc.feedback.submit(
        [{"request_id": i, "label": int(y)} for i, y in zip(ids, rows["churn"], strict=True)]
    )
    return ids


def spec(**changes: Any) -> dict[str, Any]:
    return {"train": TRAIN, "label": "churn", "window": "30d", "gates": QUIET_GATES, **changes}


def run_job(svc: Services, args: dict[str, Any]) -> Any:
    job = svc.jobs.enqueue("retrain.run", args, max_retries=0)
    drain(svc.jobs)
    return svc.jobs.get(job.id)


@pytest.fixture
def logged(svc: Services, churn: pd.DataFrame) -> Services:
    register_champion(svc, churn.iloc[:600])
    log_days(svc, churn.iloc[600:], now_ms() - 20 * DAY_MS, 18)
    user_code.SEEN.clear()
    return svc


def test_retrain_registers_a_version_with_lineage_to_the_trigger(logged: Services) -> None:
    args = {"model": "churn", "trigger": "auc-floor", "decision_id": 41, "retrain": spec()}
    job = run_job(logged, args)
    assert job.status == "succeeded", job.traceback
    version = logged.registry.get_version("churn", job.result["version"])
    assert version.version == 2 and version.tags["keel.retrain.decision_id"] == "41"
    assert version.tags["keel.retrain.trigger"] == "auc-floor"
    run = logged.tracking.get_run(version.run_id)
    assert run.params["train"] == TRAIN and "holdout.auc" in run.metrics
    assert run.metrics["holdout.auc"] > 0.7
    [item] = run.inputs  # the hashed training rows
    assert item.name == "retrain-churn" and item.row_count == 1800 and len(item.content_hash) == 64
    kinds = [d.kind for d in logged.decisions.query(model="churn")]
    assert "retraining" in kinds and "gate" in kinds
    [retraining] = logged.decisions.query(model="churn", kind="retraining")
    assert retraining.related["trigger_decision_id"] == 41
    assert retraining.details["rows"] == 1800


def test_retrain_splits_by_time_without_shuffling(logged: Services) -> None:
    job = run_job(logged, {"model": "churn", "retrain": spec(split={"train": 0.5,
                 "validation": 0.25, "holdout": 0.25})})  # fmt: skip
    assert job.status == "succeeded", job.traceback
    frame, params = user_code.SEEN[-1]
    assert len(frame) == 900 and TS_COLUMN not in frame.columns
    run = logged.tracking.get_run(job.result["run_id"])
    data = logged.datasets.load("retrain-churn", run.inputs[0].dataset_version)
    ts = data[TS_COLUMN].to_numpy()
    assert np.all(np.diff(ts) >= 0)
    # the first half of the rows in time is what train saw, in that order
    expected = data.iloc[:900]["tenure"].to_numpy()
    np.testing.assert_array_equal(frame["tenure"].to_numpy(), expected)
    assert run.metrics["rows.validation"] == 450 and run.metrics["rows.holdout"] == 450


def test_class_weights_reach_train_as_sample_weight(logged: Services) -> None:
    from sklearn.utils.class_weight import compute_sample_weight

    job = run_job(logged, {"model": "churn", "retrain": spec(class_weight="balanced")})
    assert job.status == "succeeded", job.traceback
    frame, params = user_code.SEEN[-1]
    labels = frame["churn"].to_numpy()
    weights = params["sample_weight"]
    np.testing.assert_allclose(weights, compute_sample_weight("balanced", labels), rtol=1e-12)
    # n / (classes x count): the rarer churners weigh more, and the classes weigh the same
    rare = int(np.argmin(np.bincount(labels.astype(int))))
    assert weights[labels == rare][0] > weights[labels != rare][0]
    assert weights[labels == rare].sum() == pytest.approx(weights[labels != rare].sum())
    # a mapping, multiplied with the decay weights
    weighted = spec(class_weight={"1": 3.0, "0": 1.0}, decay_per_day=0.1)
    job = run_job(logged, {"model": "churn", "retrain": weighted})
    assert job.status == "succeeded", job.traceback
    frame, params = user_code.SEEN[-1]
    decay_only = run_job(logged, {"model": "churn", "retrain": spec(decay_per_day=0.1)})
    assert decay_only.status == "succeeded"
    _, plain = user_code.SEEN[-1]
    expected = plain["sample_weight"] * np.where(frame["churn"].to_numpy() == 1, 3.0, 1.0)
    np.testing.assert_allclose(params["sample_weight"], expected, rtol=1e-12)


@pytest.mark.parametrize("weights", [{"1": 0.0}, {"1": -2}, {}, "even", {"1": "x"}])
def test_bad_class_weights_are_refused_naming_the_field(logged: Services, weights: Any) -> None:
    args = {"model": "churn", "retrain": spec(class_weight=weights)}
    with pytest.raises(InvalidInput) as caught:
        logged.jobs.enqueue("retrain.run", args)
    assert "class_weight" in (caught.value.field or "")
    # a label the rows do not hold fails the run, naming the field, and nothing registers
    job = run_job(logged, {"model": "churn", "retrain": spec(class_weight={"7": 2.0})})
    assert job.status == "failed" and "retrain.class_weight" in (job.error or "")
    assert [v.version for v in logged.registry.list_versions("churn")] == [1]


def test_retrain_passes_decay_weights(logged: Services) -> None:
    job = run_job(logged, {"model": "churn", "retrain": spec(decay_per_day=0.1)})
    assert job.status == "succeeded", job.traceback
    frame, params = user_code.SEEN[-1]
    weights = params["sample_weight"]
    assert len(weights) == len(frame) and weights[-1] == pytest.approx(1.0)
    assert np.all(np.diff(weights) >= 0)  # older rows weigh less
    # the oldest training row is ~12.6 days older than the newest: e^(-0.1 * age)
    assert weights[0] == pytest.approx(np.exp(-0.1 * 12), rel=0.1)


def test_retrain_excludes_rows_a_rollback_marked_bad(svc: Services, churn: pd.DataFrame) -> None:
    register_champion(svc, churn.iloc[:600])
    client = Client(settings=svc.settings)
    with client.start_run("seed", capture_env=False) as run:
        model = user_code.train(churn.iloc[:600][[*FEATURES, "churn"]], {"C": 0.1})
        run.log_model(model, registered_name="churn", input_example=churn[FEATURES][:5])
    client.close()
    log_days(svc, churn.iloc[600:1800], now_ms() - 10 * DAY_MS, 9)
    arms = [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}]
    policy = {"name": "live", "model": "churn", "strategy": "canary", "steps": [10, 100]}
    policy["arms"] = arms
    created = svc.deployments.create(policy).created_at_ms
    # 300 canary answers inside the deployment's life, then the rollback marks them bad
    log_days(svc, churn.iloc[1800:2100], created, 1, 1, deployment="live", arm="canary")
    time.sleep(max(0.0, (created + 400 - now_ms()) / 1000))
    svc.deployments.rollback("live", reason="canary broke")
    job = run_job(svc, {"model": "churn", "retrain": spec(window="30d")})
    assert job.status == "succeeded", job.traceback
    [retraining] = svc.decisions.query(model="churn", kind="retraining")
    assert retraining.details["excluded_bad_window_rows"] == 300
    assert retraining.details["rows"] == 1200


def test_retrain_after_change_point_keeps_only_later_rows(logged: Services) -> None:
    since = now_ms() - 8 * DAY_MS
    args = {"model": "churn", "retrain": spec(),
            "data": {"mode": "after_change_point", "since_ms": since}}  # fmt: skip
    job = run_job(logged, args)
    assert job.status == "succeeded", job.traceback
    [retraining] = logged.decisions.query(model="churn", kind="retraining")
    assert retraining.details["excluded_before_change_point_rows"] > 0
    run = logged.tracking.get_run(job.result["run_id"])
    data = logged.datasets.load("retrain-churn", run.inputs[0].dataset_version)
    assert data[TS_COLUMN].min() >= since


def test_a_raising_train_function_fails_the_job_and_keeps_the_champion(logged: Services) -> None:
    logged.jobs.backoff_s = 0.0  # a retry, were there one, would be due at once
    args = {"model": "churn", "retrain": spec(train=BROKEN, executor="inline")}
    queued = logged.jobs.enqueue("retrain.run", args)
    assert queued.max_retries == 3
    drain(logged.jobs)
    job = logged.jobs.get(queued.id)
    # not retried: the same code fails on the same rows (one run, one decision)
    assert (job.status, job.attempts) == ("failed", 1)
    assert "blew up on purpose" in (job.traceback or "")
    assert "not retried" in "\n".join(line.message for line in job.logs)
    [decision] = logged.decisions.query(model="churn", kind="retraining")
    assert "failed" in decision.summary
    assert "RuntimeError: the train function blew up on purpose" in decision.details["traceback"]
    run = logged.tracking.get_run(decision.details["run_id"])
    assert run.status.value == "FAILED" and "blew up" in run.tags["keel.retrain.error"]
    assert logged.registry.get_model("churn").aliases == {"champion": 1}
    assert [v.version for v in logged.registry.list_versions("churn")] == [1]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("tests.automation.no_such_module:train", "cannot import"),
        ("tests.automation.retrain_train:missing", "has no 'missing'"),
        ("tests.automation.retrain_train:NOT_CALLABLE", "not callable"),
        ("no-colon", "expected 'package.module:function'"),
    ],
)
def test_a_bad_train_path_is_refused_at_enqueue_naming_the_field(
    svc: Services, path: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        svc.jobs.enqueue("retrain.run", {"model": "churn", "retrain": spec(train=path)})
    assert caught.value.field == "args.retrain.train" and reason in caught.value.message
    assert svc.jobs.list_jobs() == []


def test_retrain_is_idempotent_by_its_arguments(logged: Services) -> None:
    args = {"model": "churn", "decision_id": 7, "retrain": spec()}
    first = run_job(logged, args)
    assert first.status == "succeeded", first.traceback
    again = logged.jobs.enqueue("retrain.run", args, key="another-key", max_retries=0)
    drain(logged.jobs)
    second = logged.jobs.get(again.id)
    assert second.result["version"] == first.result["version"]
    assert len(logged.registry.list_versions("churn")) == 2
    assert first.result["run_id"] == second.result["run_id"] and job_key(args)
