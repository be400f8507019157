"""R-TRN-09 incremental updates on the telco churn table: a real SGD champion updated with
partial_fit as label batches arrive, each batch used exactly once (the high-water mark),
a label-flipped batch quarantined, a model that cannot be updated refused at apply time."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tests.automation.incremental_train as user_code
from tests.automation.conftest import drain
from tests.automation.retrain_train import Killed
from tests.automation.test_retrain import FEATURES, QUIET_GATES, log_days
from tests.automation.test_retrain import TRAIN as LOGISTIC

from keel import Client
from keel._models import now_ms
from keel.automation.retrain.data import TS_COLUMN
from keel.automation.retrain.marks import high_water_mark
from keel.automation.retrain.pipeline import register_retrain_kind, run_retrain
from keel.config import Settings
from keel.demo.data import load_churn
from keel.services import Services, open_services

SGD = "tests.automation.incremental_train:train"
DAY_MS = 86_400_000
BATCH = 500
#: The retrain tests' quiet gates, with the train/holdout gap off too: 100 held-out rows
#: make it noisy (0.07 on one clean batch).
GATES = {**QUIET_GATES, "overfit": {"enabled": False}}
NO_MARGIN = {k: v for k, v in GATES.items() if k != "margin"}


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    register_retrain_kind()
    services = open_services(Settings(home=tmp_path / "keel"))
    yield services
    services.close()


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    frame = load_churn()[["customer_id", *FEATURES, "churn"]].head(3200)
    return frame.reset_index(drop=True)


def champion(svc: Services, rows: pd.DataFrame, train: Any = user_code.train) -> Any:
    """v1 of ``churn`` trained on ``rows`` and made champion; its native model."""
    model = train(rows[[*FEATURES, "churn"]], {})
    client = Client(settings=svc.settings)
    with client.start_run("seed", capture_env=False) as run:
        version = run.log_model(model, registered_name="churn", input_example=rows[FEATURES][:5])
    client.set_alias("churn", "champion", version.version)
    client.close()
    return model


def spec(**changes: Any) -> dict[str, Any]:
    incremental = {"settle": "0s", "promote_to": "champion", **changes.pop("incremental", {})}
    return {"train": SGD, "label": "churn", "window": "60d", "mode": "incremental",
            "gates": GATES, "incremental": incremental, **changes}  # fmt: skip


def run(svc: Services, n: int, **changes: Any) -> dict[str, Any]:
    """One incremental job through the queue (a new key: decision ``n``)."""
    job = svc.jobs.enqueue(
        "retrain.run",
        {"model": "churn", "decision_id": n, "retrain": spec(**changes)},
        max_retries=0,
    )
    drain(svc.jobs)
    done = svc.jobs.get(job.id)
    assert done.status == "succeeded", done.traceback
    return done.result  # type: ignore[no-any-return]


def batch_rows(svc: Services, result: dict[str, Any]) -> pd.DataFrame:
    stored = svc.tracking.get_run(result["run_id"]).inputs[0]
    return svc.datasets.load("incremental-churn", stored.dataset_version)


def flipped(rows: pd.DataFrame, share: float, seed: int = 0) -> pd.DataFrame:
    out = rows.copy()
    picked = np.random.default_rng(seed).choice(len(out), int(share * len(out)), replace=False)
    out.loc[out.index[picked], "churn"] = 1 - out["churn"].iloc[picked].to_numpy()
    return out


def test_three_batches_each_update_uses_exactly_the_new_rows(
    svc: Services, churn: pd.DataFrame
) -> None:
    champion(svc, churn.iloc[:600])
    start = now_ms() - 40 * DAY_MS
    marks = [high_water_mark(svc, "churn")]
    assert marks == [0]
    for k in range(3):
        rows = churn.iloc[600 + k * BATCH : 600 + (k + 1) * BATCH]
        first = start + k * 10 * DAY_MS
        log_days(svc, rows, first, 5)
        parent = svc.registry.get_model("churn").aliases["champion"]
        before = copy.deepcopy(svc.monitors.load_model(svc.registry.get_version("churn", parent)))
        result = run(svc, k)
        assert result["outcome"] == "updated" and result["parent_version"] == parent
        assert (result["rows"], result["rows_update"], result["rows_holdout"]) == (500, 400, 100)
        data = batch_rows(svc, result)
        # exactly this batch: its 500 rows, predicted in its own days, none of the others
        assert len(data) == BATCH and data[TS_COLUMN].min() >= first
        assert data[TS_COLUMN].max() < first + 5 * DAY_MS
        assert sorted(data["tenure"]) == sorted(rows["tenure"])
        # the new version is the parent after one partial_fit pass over the oldest 400 rows
        expected = before.native
        update = data.iloc[:400]
        expected[-1].partial_fit(
            expected[:-1].transform(update[FEATURES]), update["churn"], classes=[0, 1]
        )
        version = svc.registry.get_version("churn", result["version"])
        got = svc.monitors.load_model(version).native
        np.testing.assert_allclose(got[-1].coef_, expected[-1].coef_, rtol=1e-9)
        assert version.tags["keel.incremental.parent"] == str(parent)
        assert version.tags["keel.incremental.rows"] == "400"
        assert svc.registry.get_model("churn").aliases["champion"] == result["version"]
        marks.append(high_water_mark(svc, "churn"))
        assert marks[-1] == result["to_ms"] > marks[-2] and result["from_ms"] == marks[-2]
    # a run with no new labels does nothing: no run, no version, the mark stays
    idle = run(svc, 99)
    assert idle["outcome"] == "nothing new" and idle["new_rows"] == 0
    assert len(svc.registry.list_versions("churn")) == 4
    assert high_water_mark(svc, "churn") == marks[-1]
    updates = svc.decisions.query(model="churn", kind="retraining")
    assert len(updates) == 3 and all(d.details["outcome"] == "updated" for d in updates)


def test_a_batch_with_40_percent_flipped_labels_is_quarantined(
    svc: Services, churn: pd.DataFrame
) -> None:
    from scipy.stats import poisson_binom
    from statsmodels.stats.proportion import proportions_ztest

    model = champion(svc, churn.iloc[:600])
    start = now_ms() - 40 * DAY_MS
    log_days(svc, churn.iloc[600:1100], start, 5)
    assert run(svc, 1)["outcome"] == "updated"
    champion_before = svc.registry.get_model("churn").aliases["champion"]
    bad = flipped(churn.iloc[1100:1600], 0.4)
    log_days(svc, bad, start + 10 * DAY_MS, 5)
    result = run(svc, 2)
    assert result["outcome"] == "quarantined" and not result["promoted"]
    assert svc.registry.get_model("churn").aliases["champion"] == champion_before
    assert len(svc.registry.list_versions("churn")) == 2  # nothing registered
    assert high_water_mark(svc, "churn") == result["to_ms"]  # never offered again
    [decision] = [
        d
        for d in svc.decisions.query(model="churn", kind="retraining")
        if d.details["outcome"] == "quarantined"
    ]
    assert "quarantined, not used" in decision.summary and "unchanged" in decision.summary
    rate, flips = decision.details["guard"]["checks"]
    assert not rate["passed"] and not flips["passed"]
    # the numbers: the batch's rate against the first batch's (statsmodels' z-test) ...
    recent, now = churn["churn"].iloc[600:1100], bad["churn"]
    _, p = proportions_ztest([now.sum(), recent.sum()], [len(now), len(recent)])
    assert rate["recent_rows"] == 500 and rate["pvalue"] == pytest.approx(p, rel=1e-9)
    assert rate["shift"] == pytest.approx(now.mean() - recent.mean(), abs=1e-6)
    # ... and the champion's confident rows (v2's scores; scipy's Poisson-binomial)
    v2 = svc.monitors.load_model(svc.registry.get_version("churn", champion_before)).native
    scores = v2.predict_proba(bad[FEATURES])[:, 1]
    sure = np.maximum(scores, 1 - scores) >= 0.8
    agree = ((scores[sure] >= 0.5).astype(int) == now.to_numpy()[sure]).sum()
    assert flips["confident_rows"] == int(sure.sum())
    assert flips["pvalue"] == pytest.approx(
        poisson_binom.cdf(agree, np.maximum(scores, 1 - scores)[sure]), rel=1e-6
    )
    assert flips["disagreement_excess"] > 0.25 and model is not None
    # the next clean batch updates again, from the unchanged champion, on its own rows only,
    # with the quarantined batch left out of the recent window
    log_days(svc, churn.iloc[1600:2100], start + 20 * DAY_MS, 5)
    clean = run(svc, 3)
    assert clean["outcome"] == "updated" and clean["rows"] == BATCH
    assert clean["parent_version"] == champion_before
    assert clean["guard"]["checks"][0]["recent_rows"] == 500


def test_a_label_flip_that_keeps_the_positive_rate_is_still_caught(
    svc: Services, churn: pd.DataFrame
) -> None:
    champion(svc, churn.iloc[:600])
    rows = churn.iloc[600:1100].copy()
    scores = svc.monitors.load_model(svc.registry.get_version("churn", 1)).native.predict_proba(
        rows[FEATURES]
    )[:, 1]
    # an attacker flips the labels the model is surest about, as many each way
    positives = np.flatnonzero((rows["churn"] == 1).to_numpy())
    negatives = np.flatnonzero((rows["churn"] == 0).to_numpy())
    k = 60
    hit = [
        *positives[np.argsort(-scores[positives])][:k],
        *negatives[np.argsort(scores[negatives])][:k],
    ]
    rows.iloc[hit, rows.columns.get_loc("churn")] = 1 - rows["churn"].iloc[hit].to_numpy()
    log_days(svc, rows, now_ms() - 10 * DAY_MS, 5)
    result = run(svc, 1)
    assert result["outcome"] == "quarantined"
    rate, flips = result["guard"]["checks"]
    assert rate["skipped"] and not flips["passed"]  # no recent window yet; the flips alone


def test_a_model_without_partial_fit_is_refused_naming_mode(
    svc: Services, churn: pd.DataFrame, tmp_path: Path
) -> None:
    import tests.automation.retrain_train as logistic
    from tests.conftest import serve_in_thread

    from keel.api.app import create_app
    from keel.errors import InvalidInput

    champion(svc, churn.iloc[:600], logistic.train)  # LogisticRegression: no partial_fit
    args = {"model": "churn", "retrain": spec(train=LOGISTIC)}
    with pytest.raises(InvalidInput) as caught:
        svc.jobs.enqueue("retrain.run", args)
    assert caught.value.field == "args.retrain.mode"
    assert "partial_fit" in caught.value.message and "LogisticRegression" in caught.value.message
    assert svc.jobs.list_jobs() == []  # nothing queued
    trigger = {"name": "online", "model": "churn", "any": [{"metric": "new_labels",
               "threshold": 400}], "retrain": spec(train=LOGISTIC)}  # fmt: skip
    with serve_in_thread(create_app(services=svc)) as url:
        remote = Client(url, settings=svc.settings.model_copy(update={"home": tmp_path / "r"}))
        with pytest.raises(InvalidInput) as over_http:
            remote.apply_trigger(trigger)
        remote.close()
    assert over_http.value.field == "retrain.mode"
    # an update function makes it updatable: accepted, and it runs on the new rows
    log_days(svc, churn.iloc[600:1100], now_ms() - 10 * DAY_MS, 5)
    user_code.SEEN.clear()
    result = run(svc, 1, train=LOGISTIC, update="tests.automation.incremental_train:refit")
    assert result["outcome"] == "updated" and len(user_code.SEEN[0]) == 400


def test_a_kill_between_update_and_register_leaves_the_mark_and_reuses_the_rows(
    svc: Services, churn: pd.DataFrame
) -> None:
    champion(svc, churn.iloc[:600])
    log_days(svc, churn.iloc[600:1100], now_ms() - 10 * DAY_MS, 5)
    args = {"model": "churn", "decision_id": 7,
            "retrain": spec(update="tests.automation.incremental_train:dies")}  # fmt: skip
    user_code.SEEN.clear()
    user_code.DIE_ON_CALL.update(n=1, calls=0)
    with pytest.raises(Killed):  # a BaseException: nothing in the job handles it, as kill -9
        run_retrain(svc, args)
    assert high_water_mark(svc, "churn") == 0  # unmoved
    assert [v.version for v in svc.registry.list_versions("churn")] == [1]
    # labels arriving meanwhile are not part of the re-delivered job's batch
    log_days(svc, churn.iloc[1100:1600], now_ms() - 4 * DAY_MS, 3)
    result = run_retrain(svc, args)  # the re-delivered job resumes its run
    assert result["outcome"] == "updated" and result["rows"] == BATCH
    first, again = user_code.SEEN
    pd.testing.assert_frame_equal(first, again)  # the same rows, used once in the result
    assert [v.version for v in svc.registry.list_versions("churn")] == [2, 1]
    assert high_water_mark(svc, "churn") == result["to_ms"]
    assert run_retrain(svc, args) == result  # done: nothing redone
    # a new run takes the later batch only
    later = run(svc, 8)
    assert later["outcome"] == "updated" and later["rows"] == BATCH
    assert later["from_ms"] == result["to_ms"]


def test_a_volume_trigger_launches_an_incremental_update(
    svc: Services, churn: pd.DataFrame
) -> None:
    champion(svc, churn.iloc[:600])
    trigger = {"name": "online", "model": "churn", "cooldown": "1m",
               "any": [{"metric": "new_labels", "threshold": 400}],
               "retrain": spec(gates=NO_MARGIN)}  # fmt: skip
    svc.triggers.apply(trigger)
    log_days(svc, churn.iloc[600:1100], now_ms() - 10 * DAY_MS, 5)
    evaluation = svc.triggers.evaluate("online", manual=False)
    assert evaluation.fired, evaluation.reason
    drain(svc.jobs)
    job = svc.jobs.get(evaluation.job_id)
    assert job.status == "succeeded", job.traceback
    assert job.result["outcome"] == "updated" and job.result["rows"] == BATCH
    # without a margin in the spec's gates, an update needs no improvement: no regression
    [gate] = svc.decisions.query(model="churn", kind="gate")
    assert "absolute margin 0;" in gate.details["gates"]["margin"]["reason"]
    assert job.result["gates_passed"], job.result
    assert svc.registry.get_model("churn").aliases["champion"] == 2
