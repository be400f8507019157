"""R-TRN-06 duration holdout: ``split: {holdout: 180d}`` ("last 6 months") holds out the
rows within that time of the newest row; the older rows split train : validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.automation.test_retrain import churn, logged, run_job, spec, svc  # noqa: F401

from keel.automation.retrain.data import TS_COLUMN, time_split
from keel.automation.retrain.spec import SplitSpec, parse_job_args
from keel.errors import InvalidInput
from keel.services import Services

DAY_MS = 86_400_000


def test_a_duration_holdout_is_the_last_days_of_the_rows() -> None:
    # 400 days of one row a day, shuffled: the holdout is exactly the last 180 days' rows
    ts = np.random.default_rng(1).permutation(np.arange(400) * DAY_MS)
    frame = pd.DataFrame({TS_COLUMN: ts, "x": np.arange(400)})
    train, validation, holdout = time_split(frame, SplitSpec(holdout="180d"))
    newest = int(ts.max())
    assert len(holdout) == 181  # days 219..399: within 180 days of the newest, both ends
    assert holdout[TS_COLUMN].min() == newest - 180 * DAY_MS
    assert len(train) == round(219 * 0.70 / 0.85) and len(train) + len(validation) == 219
    assert train[TS_COLUMN].max() < validation[TS_COLUMN].min()
    assert validation[TS_COLUMN].max() < holdout[TS_COLUMN].min()
    fractions = time_split(frame, SplitSpec())  # fractions still work as before
    assert [len(p) for p in fractions] == [280, 60, 60]


@pytest.mark.parametrize(
    ("holdout", "message"),
    [("6 months", "expected a duration"), (0, "fraction in (0, 1)"), ("0d", "longer than zero")],
)
def test_a_bad_holdout_names_the_key(holdout: object, message: str) -> None:
    args = {"model": "m", "retrain": {"train": "json:dumps", "split": {"holdout": holdout}}}
    with pytest.raises(InvalidInput) as caught:
        parse_job_args(args)
    assert caught.value.field == "args.retrain.split.holdout" and message in caught.value.message


def test_a_real_retrain_holds_out_the_last_days(logged: Services) -> None:  # noqa: F811
    job = run_job(logged, {"model": "churn", "retrain": spec(split={"holdout": "5d"})})
    assert job.status == "succeeded", job.traceback
    run = logged.tracking.get_run(job.result["run_id"])
    assert run.params["split"] == "0.7/0.15/5d"
    [item] = run.inputs
    rows = logged.datasets.load(item.name, item.dataset_version)
    ts = rows[TS_COLUMN]
    expected = int((ts >= ts.max() - 5 * DAY_MS).sum())
    assert 0 < expected < len(rows)
    assert run.metrics["rows.holdout"] == expected
    assert run.metrics["rows.train"] + run.metrics["rows.validation"] == len(rows) - expected
