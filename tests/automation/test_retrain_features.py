"""Retraining a model a feature service feeds: the training rows carry the service's
features joined point in time from the feature store on the logged entity and prediction
time — values equal to a ``pandas.merge_asof`` reference, not today's values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tests.automation.retrain_features_train as features_train
from tests.automation.conftest import drain
from tests.automation.test_retrain import QUIET_GATES

from keel import Client
from keel._models import now_ms
from keel.automation.retrain.data import TS_COLUMN
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.config import Settings
from keel.features import Entity, FeatureService, FeatureView, FileSource
from keel.services import Services, open_services
from keel.serving._segments import BASE_SCHEMA
from keel.serving.predlog import log_root, partition_dir, write_segment

DAY_MS = 86_400_000
CUSTOMERS = 200
STORE = ["tenure_days", "monthly_revenue", "late_payments"]  # fetched by the binding
REQUEST = "minutes_today"  # given by each request
TTL_S = 36 * 3600  # a customer whose daily snapshot is missing goes stale within a day
TRAIN = "tests.automation.retrain_features_train:train"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    register_retrain_kind()
    services = open_services(Settings(home=tmp_path / "keel"))
    yield services
    services.close()


def _profile(now: int, days: int) -> pd.DataFrame:
    """Daily snapshots per customer; every third day's snapshot is missing for customers
    with an odd id, so the TTL matters for them."""
    rng = np.random.default_rng(3)
    frames = []
    for day in range(days, 0, -1):
        ids = np.arange(CUSTOMERS, dtype=np.int64)
        if day % 3 == 0:
            ids = ids[ids % 2 == 0]
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": ids,
                    "event_timestamp": pd.Timestamp(now - day * DAY_MS, unit="ms", tz="UTC"),
                    "tenure_days": rng.integers(10, 2000, len(ids)).astype(np.int64),
                    "monthly_revenue": rng.gamma(2.0, 30.0, len(ids)).round(2),
                    "late_payments": rng.poisson(1.0, len(ids)).astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _apply(svc: Services, source: Path, model: str) -> None:
    svc.features.apply(
        [
            Entity(name="customer", join_keys=["customer_id"], value_type="int64"),
            FeatureView(
                name="profile",
                entities=["customer"],
                source=FileSource(path=str(source)),
                ttl=TTL_S,
                features=[
                    {"name": "tenure_days", "dtype": "int64"},
                    {"name": "monthly_revenue", "dtype": "float64"},
                    {"name": "late_payments", "dtype": "int64"},
                ],
            ),
            FeatureService(name="churn_features", features=["profile:*"], model=model),
        ]
    )


def _label(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    z = (
        0.05 * frame[REQUEST]
        - 0.002 * frame["tenure_days"]
        + 0.015 * frame["monthly_revenue"]
        + 0.8 * frame["late_payments"]
        - 1.5
    )
    return (rng.random(len(frame)) < 1 / (1 + np.exp(-z.to_numpy(dtype=float)))).astype(int)


def _requests(now: int, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` predictions over the last 9 days at distinct milliseconds."""
    offsets = rng.choice(9 * DAY_MS - 60_000, n, replace=False) + 60_000
    return pd.DataFrame(
        {
            "request_id": [f"q{i}" for i in range(n)],
            "customer_id": rng.integers(0, CUSTOMERS, n).astype(np.int64),
            "ts": pd.to_datetime(now - offsets, unit="ms", utc=True),
            REQUEST: rng.uniform(0, 60, n).round(1),
        }
    ).sort_values("ts", ignore_index=True)


def _ms(stamps: pd.Series) -> np.ndarray[Any, Any]:
    epoch = pd.Timestamp(0, tz="UTC")
    return np.asarray((stamps - epoch) // pd.Timedelta(milliseconds=1), dtype=np.int64)


def _log(svc: Services, rows: pd.DataFrame, entity: list[str | None]) -> None:
    """The rows as the gateway logs a bound model's predictions: the request's inputs as
    ``f_`` columns, the entity it named as ``entity_key`` (the join keys are not inputs)."""
    root = log_root(svc.settings)
    ms = _ms(rows["ts"])
    rows = rows.assign(
        _entity=entity, _dir=[str(partition_dir(root, "churn", 1, int(m))) for m in ms]
    )
    for where, part in rows.groupby("_dir", sort=False):
        table = {
            "ts": pa.array(part["ts"], pa.timestamp("ms", tz="UTC")),
            "request_id": part["request_id"].tolist(),
            "entity_key": pa.array(part["_entity"], pa.string(), from_pandas=True),
            "output": [0.5] * len(part),
        }
        for column in BASE_SCHEMA:
            if column.name not in table:
                table[column.name] = pa.array([None] * len(part), column.type)
        table[f"f_{REQUEST}"] = part[REQUEST].to_numpy()
        write_segment(pa.table(table), Path(where), f"part-{part['request_id'].iloc[0]}.parquet")


def test_a_bound_model_retrains_on_point_in_time_feature_store_columns(
    svc: Services, tmp_path: Path
) -> None:
    now = now_ms()
    rng = np.random.default_rng(17)
    profile = _profile(now, 10)
    source = tmp_path / "profile.parquet"
    profile.to_parquet(source)
    _apply(svc, source, "churn")

    # the champion: trained on a point-in-time frame of the service's features, as serving
    seed = _requests(now, 600, rng).rename(columns={"ts": "event_timestamp"})
    seed = svc.features.get_historical_features(seed, "churn_features").dropna()
    seed["churn"] = _label(seed, rng)
    columns = [REQUEST, *STORE]
    model = features_train.train(seed[[*columns, "churn"]], {})
    client = Client(settings=svc.settings)
    with client.start_run("seed", capture_env=False) as run:
        version = run.log_model(model, registered_name="churn", input_example=seed[columns][:5])
    client.set_alias("churn", "champion", version.version)
    client.close()

    rows = _requests(now, 1200, rng)
    entity: list[str | None] = [str(c) for c in rows["customer_id"]]
    for i in range(0, 1200, 40):  # 30 predictions logged without the entity they named
        entity[i] = None
    _log(svc, rows, entity)
    reference = pd.merge_asof(
        rows,
        profile.sort_values("event_timestamp"),
        left_on="ts",
        right_on="event_timestamp",
        by="customer_id",
        direction="backward",
        tolerance=pd.Timedelta(seconds=TTL_S),
    )
    reference["churn"] = _label(reference[[REQUEST, *STORE]].fillna(0), rng)
    svc.feedback.submit(
        [
            {"request_id": r, "label": int(y)}
            for r, y in zip(rows["request_id"], reference["churn"], strict=True)
        ]
    )
    spec = {"train": TRAIN, "label": "churn", "window": "30d", "gates": QUIET_GATES}
    job = svc.jobs.enqueue("retrain.run", {"model": "churn", "retrain": spec}, max_retries=0)
    drain(svc.jobs)
    job = svc.jobs.get(job.id)
    assert job.status == "succeeded", job.traceback

    run = svc.tracking.get_run(job.result["run_id"])
    frame = svc.datasets.load("retrain-churn", run.inputs[0].dataset_version)
    assert list(frame.columns) == [REQUEST, *STORE, "churn", TS_COLUMN]
    kept = reference.loc[[e is not None for e in entity]]
    assert len(frame) == len(kept) == 1170
    expected = kept.set_index(_ms(kept["ts"]))
    got = frame.set_index(TS_COLUMN)
    expected = expected.loc[got.index]
    for name in [REQUEST, *STORE]:
        np.testing.assert_array_equal(
            got[name].to_numpy(dtype=float), expected[name].to_numpy(dtype=float), err_msg=name
        )
    # the TTL left some rows without store values, exactly where merge_asof did
    nulls = int(got["tenure_days"].isna().sum())
    assert nulls == int(expected["tenure_days"].isna().sum()) and nulls > 0
    # point in time, not the newest snapshot: most rows differ from today's values
    newest = profile.sort_values("event_timestamp").groupby("customer_id").last()
    today = newest.loc[expected["customer_id"], "tenure_days"].to_numpy()
    assert (today != got["tenure_days"].to_numpy()).mean() > 0.5

    [retraining] = svc.decisions.query(model="churn", kind="retraining")
    assert retraining.details["feature_store_columns"] == 3
    assert retraining.details["excluded_no_entity_rows"] == 30
    assert run.metrics["holdout.auc"] > 0.6


def test_an_unbound_model_keeps_the_logged_features(svc: Services, tmp_path: Path) -> None:
    """A feature service naming another model changes nothing for this one."""
    now = now_ms()
    rng = np.random.default_rng(5)
    profile = _profile(now, 10)
    profile.to_parquet(tmp_path / "profile.parquet")
    _apply(svc, tmp_path / "profile.parquet", "someone-else")
    rows = _requests(now, 300, rng)
    rows["tenure_days"] = rng.integers(10, 2000, len(rows))
    from keel.automation.retrain.storefeatures import bound_features

    assert bound_features(svc, "churn", [REQUEST, "tenure_days"]) is None
    assert bound_features(svc, "someone-else", [REQUEST, "tenure_days"]) is not None
