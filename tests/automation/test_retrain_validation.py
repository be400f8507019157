"""R-CICD-07 data validation before training, on real churn rows logged through keel: the
statistics and the schema inferred from the champion's logged training data, schema
violations and anomalies refuse the retraining naming the column (nothing trained), a small
corrupted period is quarantined, skew numbers are scipy's KS."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tests.automation.retrain_train as user_code
from scipy import stats as sps
from tests.automation.test_retrain import (  # noqa: F401
    DAY_MS,
    FEATURES,
    churn,
    log_days,
    run_job,
    spec,
    svc,
)
from typer.testing import CliRunner

from keel import Client
from keel._models import now_ms
from keel.automation.retrain.validation import ARTIFACT
from keel.cli.main import app
from keel.services import Services


def register_with_reference(services: Services, rows: pd.DataFrame) -> None:
    """churn v1 @champion with its training rows logged as the run's training input (with
    the customer id beside the features, as a logged training frame often has)."""
    model = user_code.train(rows[[*FEATURES, "churn"]], {})
    client = Client(settings=services.settings)
    with client.start_run("seed", capture_env=False) as run:
        run.log_input(rows[["customer_id", *FEATURES, "churn"]], name="churn-train")
        version = run.log_model(model, registered_name="churn", input_example=rows[FEATURES][:5])
    client.set_alias("churn", "champion", version.version)  # type: ignore[union-attr]
    client.close()


@pytest.fixture
def champion(svc: Services, churn: pd.DataFrame) -> Services:  # noqa: F811
    register_with_reference(svc, churn.iloc[:600])
    user_code.SEEN.clear()
    return svc


def log_window(services: Services, rows: pd.DataFrame, bad_days: dict[int, dict[str, Any]]) -> None:
    """``rows`` over 18 days from 20 days ago; on each day in ``bad_days`` the columns given
    there replace the logged values (a corrupted upstream day)."""
    start, per_day = now_ms() - 20 * DAY_MS, -(-len(rows) // 18)
    for day in range(18):
        part = rows.iloc[day * per_day : (day + 1) * per_day]
        log_days(services, part.assign(**bad_days.get(day, {})), start + day * DAY_MS, 1)


def refused(job: Any, column: str, check: str) -> dict[str, Any]:
    assert job.status == "succeeded", job.traceback
    result = job.result
    assert result["refused"] is True and "version" not in result
    assert column in result["columns"]
    checks = {(f["check"], f["column"]) for f in result["data_validation"]["failures"]}
    assert any(c == check and column in (col or "") for c, col in checks), checks
    return dict(result)


def assert_nothing_trained(services: Services, result: dict[str, Any]) -> None:
    assert user_code.SEEN == []  # the train function never ran
    assert [v.version for v in services.registry.list_versions("churn")] == [1]
    run = services.tracking.get_run(result["run_id"])
    assert run.status.value == "FAILED" and run.tags["keel.retrain.stage"] == "refused"
    _, path = services.tracking.artifact_file(run.id, ARTIFACT)
    assert json.loads(path.read_text())["passed"] is False
    [decision] = services.decisions.query(model="churn", kind="retraining")
    assert decision.details["refused"] is True
    assert decision.details["columns"] == result["columns"]
    assert "refused before training" in decision.summary


def test_a_clean_window_passes_with_stats_and_skew_and_trains(
    champion: Services,
    churn: pd.DataFrame,  # noqa: F811
) -> None:
    log_window(champion, churn.iloc[600:], {})
    job = run_job(champion, {"model": "churn", "retrain": spec()})
    assert job.status == "succeeded", job.traceback
    checked = job.result["data_validation"]
    assert checked["passed"] and checked["failures"] == [] and job.result["version"] == 2
    assert checked["reference"]["dataset"] == "churn-train" and checked["reference"]["rows"] == 600
    assert checked["quarantined_rows"] == 0 and checked["kept_rows"] == 1800
    # the statistics are those of the rows trained on
    [item] = champion.tracking.get_run(job.result["run_id"]).inputs
    rows = champion.datasets.load(item.name, item.dataset_version)
    charges = rows["monthly_charges"]
    stats = checked["stats"]["monthly_charges"]
    assert stats["count"] == 1800 and stats["missing_share"] == 0
    assert stats["mean"] == pytest.approx(charges.mean()) and stats["std"] == pytest.approx(
        charges.std()
    )
    assert stats["min"] == charges.min() and stats["distinct"] == charges.nunique()
    top = checked["stats"]["contract"]["top"][0]
    counts = rows["contract"].astype(str).value_counts()
    assert (top["value"], top["count"]) == (counts.index[0], counts.iloc[0])
    # skew: keel's KS is scipy's two-sample KS on the reference vs the training rows
    reference = churn.iloc[:600]
    for name in ("tenure", "monthly_charges"):
        expected = sps.ks_2samp(reference[name].to_numpy(float), rows[name].to_numpy(float))
        assert checked["skew"][name]["ks"] == pytest.approx(expected.statistic, abs=1e-12)
        assert checked["skew"][name]["ks_pvalue"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert set(checked["skew"]["contract"]) == {"psi"}
    # PSI on the reference's deciles = KL both ways (scipy.stats.entropy) of smoothed shares
    ref_values = np.sort(reference["monthly_charges"].to_numpy(float))
    edges = np.unique(np.quantile(ref_values, np.linspace(0, 1, 11)[1:-1]))

    def shares(values: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, values, "left"), minlength=edges.size + 1)
        p = np.maximum(counts / counts.sum(), 1e-4)
        return np.asarray(p / p.sum())

    r, c = shares(ref_values), shares(rows["monthly_charges"].to_numpy(float))
    psi = sps.entropy(c, r) + sps.entropy(r, c)
    assert checked["skew"]["monthly_charges"]["psi"] == pytest.approx(psi, rel=1e-9)
    # stored with the run, in the retraining decision, and shown by keel jobs show
    _, path = champion.tracking.artifact_file(job.result["run_id"], ARTIFACT)
    stored = json.loads(path.read_text())
    assert list(stored["schema"]) == FEATURES  # the signature's inputs, not the id
    assert stored["schema"]["monthly_charges"]["kind"] == "numeric"
    assert stored["schema"]["monthly_charges"]["min"] == reference["monthly_charges"].min()
    assert set(stored["schema"]["contract"]["categories"]) == set(reference["contract"].astype(str))
    [decision] = champion.decisions.query(model="churn", kind="retraining")
    assert decision.details["data_validation"]["passed"] is True
    env = {"KEEL_HOME": str(champion.settings.home), "KEEL_DATABASE_URL": None,
           "KEEL_SERVER_URL": None}  # fmt: skip
    shown = CliRunner().invoke(app, ["jobs", "show", job.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "data validation: passed" in shown.stdout
    assert "monthly_charges: count 1800" in shown.stdout


@pytest.mark.parametrize(
    ("bad", "check"),
    [
        ({"monthly_charges": np.nan}, "missing_column"),  # all-NaN
        ({"monthly_charges": 0.0}, "corrupted_periods"),  # charges arriving as 0
    ],
    ids=["all-nan", "charges-zero"],
)
def test_a_broken_column_refuses_training_naming_it(
    champion: Services,
    churn: pd.DataFrame,  # noqa: F811
    bad: dict[str, Any],
    check: str,
) -> None:
    log_window(champion, churn.iloc[600:], dict.fromkeys(range(18), bad))
    job = run_job(champion, {"model": "churn", "retrain": spec()})
    result = refused(job, "monthly_charges", check)
    assert "monthly_charges" in result["reason"]
    assert_nothing_trained(champion, result)
    if check == "corrupted_periods":  # every day: out of range and constant
        messages = " ".join(f["message"] for f in result["data_validation"]["failures"])
        assert "100.0% of the window" in messages and "18 period(s)" in messages


def test_numbers_arriving_as_text_is_a_type_change(
    champion: Services,
    churn: pd.DataFrame,  # noqa: F811
) -> None:
    rows = churn.iloc[600:]
    text = rows.assign(monthly_charges=rows["monthly_charges"].map("{:.2f}".format))
    log_window(champion, text, {})
    job = run_job(champion, {"model": "churn", "retrain": spec()})
    result = refused(job, "monthly_charges", "type_change")
    [failure] = result["data_validation"]["failures"]
    assert "where the reference is numeric" in failure["message"]
    assert_nothing_trained(champion, result)


def test_a_small_corrupted_period_is_quarantined_a_large_one_refused(
    champion: Services,
    churn: pd.DataFrame,  # noqa: F811
) -> None:
    log_window(champion, churn.iloc[600:], {5: {"monthly_charges": 0.0}})
    job = run_job(champion, {"model": "churn", "retrain": spec()})
    assert job.status == "succeeded", job.traceback
    checked = job.result["data_validation"]
    assert checked["passed"] and checked["quarantined_rows"] == 100
    [period] = checked["quarantined_periods"]
    assert period["rows"] == 100 and period["columns"] == ["monthly_charges"]
    assert job.result["rows"] == 1700
    [trained_on, _] = user_code.SEEN[0]
    assert (trained_on["monthly_charges"] != 0).all()  # the bad day never reached train()
    # the same day with a tighter quarantine: 100 of 1800 rows is more than 5%
    tight = spec(data_validation={"quarantine": {"max_share": 0.05}}, experiment="tight")
    job = run_job(champion, {"model": "churn", "retrain": tight})
    result = refused(job, "monthly_charges", "corrupted_periods")
    assert "5.6% of the window" in result["reason"]


def test_validation_off_trains_on_anything(
    champion: Services,
    churn: pd.DataFrame,  # noqa: F811
) -> None:
    log_window(champion, churn.iloc[600:], {5: {"monthly_charges": 0.0}})
    job = run_job(champion, {"model": "churn", "retrain": spec(data_validation=False)})
    assert job.status == "succeeded", job.traceback
    assert job.result["data_validation"] is None and job.result["rows"] == 1800
