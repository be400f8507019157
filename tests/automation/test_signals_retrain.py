"""R-TRN-23 in retraining: labels derived from implicit signals weigh
``retrain.implicit_weight`` (passed to ``train`` as ``sample_weight``); 0 leaves them out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import tests.automation.retrain_train as user_code
from tests.automation.test_retrain import DAY_MS, FEATURES, register_champion, run_job, spec

from keel import Client
from keel._models import now_ms
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.config import Settings
from keel.demo.data import load_churn
from keel.services import Services, open_services
from keel.serving._segments import BASE_SCHEMA
from keel.serving.predlog import log_root, partition_dir, write_segment


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    register_retrain_kind()
    services = open_services(Settings(home=tmp_path / "keel"))
    churn = load_churn()[[*FEATURES, "churn"]].head(1800).reset_index(drop=True)
    register_champion(services, churn.iloc[:600])
    live = churn.iloc[600:].reset_index(drop=True)
    ids = [f"q{i}" for i in range(len(live))]
    start = now_ms() - 12 * DAY_MS
    table: dict[str, object] = {
        "ts": pa.array(
            [start + i * 800_000 for i in range(len(live))], pa.timestamp("ms", tz="UTC")
        ),
        "request_id": ids,
        "output": [0.5] * len(live),
    }
    for column in BASE_SCHEMA:
        if column.name not in table:
            table[column.name] = pa.nulls(len(live), column.type)
    for name in FEATURES:
        values = live[name]
        table[f"f_{name}"] = values.astype(str) if values.dtype.name == "category" else values
    write_segment(
        pa.table(table), partition_dir(log_root(services.settings), "churn", 1, start), "p.parquet"
    )
    client = Client(settings=services.settings)
    client.set_signals("churn", {"left": 1, "stayed": 0})
    # even rows: an explicit label; odd rows: only a signal (the same truth, as a signal)
    items = [
        {"request_id": rid, "label": int(y)}
        if i % 2 == 0
        else {"request_id": rid, "model": "churn", "signal": "left" if y else "stayed"}
        for i, (rid, y) in enumerate(zip(ids, live["churn"], strict=True))
    ]
    assert client.log_feedback(items)["accepted"] == len(items)
    client.close()
    user_code.SEEN.clear()
    yield services
    services.close()


def test_implicit_labels_weigh_implicit_weight(svc: Services) -> None:
    job = run_job(svc, {"model": "churn", "retrain": spec(implicit_weight=0.25)})
    assert job.status == "succeeded", job.traceback
    frame, params = user_code.SEEN[-1]
    assert "_weight" not in frame.columns
    weights = params["sample_weight"]
    assert len(weights) == len(frame) and set(weights) == {1.0, 0.25}
    assert int((weights == 0.25).sum()) == pytest.approx(len(frame) / 2, abs=1)
    decision = svc.decisions.query(model="churn", kind="retraining")[0]
    assert decision.details["implicit_rows"] == 600
    assert decision.details["excluded_implicit_rows"] == 0


def test_implicit_weight_zero_excludes_implicit_labels(svc: Services) -> None:
    job = run_job(svc, {"model": "churn", "retrain": spec(implicit_weight=0)})
    assert job.status == "succeeded", job.traceback
    frame, params = user_code.SEEN[-1]
    assert "sample_weight" not in params
    decision = svc.decisions.query(model="churn", kind="retraining")[0]
    assert decision.details["excluded_implicit_rows"] == 600
    assert decision.details["implicit_rows"] == 0
    assert decision.details["rows"] == 600


def test_default_weight_one_trains_on_every_label_unweighted(svc: Services) -> None:
    job = run_job(svc, {"model": "churn", "retrain": spec()})
    assert job.status == "succeeded", job.traceback
    _, params = user_code.SEEN[-1]
    assert "sample_weight" not in params
    decision = svc.decisions.query(model="churn", kind="retraining")[0]
    assert (decision.details["rows"], decision.details["implicit_rows"]) == (1200, 600)
    labels = svc.feedback.labelled("churn")
    assert np.array_equal(
        labels.sort_values("request_id")["label_source"].value_counts().sort_index().to_numpy(),
        [600, 600],
    )
    assert isinstance(labels, pd.DataFrame)
