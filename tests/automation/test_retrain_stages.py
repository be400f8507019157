"""R-CICD-12: a real retraining on the telco churn table records each stage's duration and
its share of the total on the run, in the job's result, in the ``retraining`` decision and
in ``keel jobs show``."""

from __future__ import annotations

import json
import math

import pytest
from tests.automation.test_retrain import churn, logged, run_job, spec, svc  # noqa: F401
from typer.testing import CliRunner

from keel.automation.retrain.stages import Stages, stage_line
from keel.cli.main import app
from keel.services import Services

STAGES = ["data", "training", "evaluation", "registration", "gates"]


def test_stages_report_shares_of_the_total() -> None:
    clock = Stages()
    clock.seconds.update({"data": 1.0, "training": 3.0})
    report = clock.report()
    assert report == {
        "seconds": {"data": 1.0, "training": 3.0},
        "share": {"data": 0.25, "training": 0.75},
        "total_s": 4.0,
    }
    assert stage_line(report) == "data 1.00s (25%), training 3.00s (75%)"
    assert Stages().report()["total_s"] == 0.0  # nothing timed: no division by zero


def test_a_real_retraining_records_its_stage_durations(
    logged: Services,  # noqa: F811
) -> None:
    job = run_job(logged, {"model": "churn", "retrain": spec()})
    assert job.status == "succeeded", job.traceback
    stages = job.result["stages"]
    assert list(stages["seconds"]) == STAGES
    assert all(v >= 0 for v in stages["seconds"].values())
    assert stages["seconds"]["training"] > 0 and stages["seconds"]["gates"] > 0
    assert math.isclose(sum(stages["share"].values()), 1.0, abs_tol=1e-3)
    assert math.isclose(sum(stages["seconds"].values()), stages["total_s"], abs_tol=1e-3)
    run = logged.tracking.get_run(job.result["run_id"])
    for name in STAGES:
        assert run.metrics[f"duration_s.{name}"] == pytest.approx(stages["seconds"][name])
        assert run.metrics[f"duration_share.{name}"] == pytest.approx(stages["share"][name])
    assert run.metrics["duration_s.total"] == pytest.approx(stages["total_s"])
    [decision] = logged.decisions.query(model="churn", kind="retraining")
    recorded = decision.details["stages"]
    # the decision precedes the gates: it carries the four stages before them, as timed
    assert list(recorded["seconds"]) == STAGES[:4]
    assert recorded["seconds"] == {k: stages["seconds"][k] for k in STAGES[:4]}
    assert "training" in decision.summary and "%)" in decision.summary
    env = {
        "KEEL_HOME": str(logged.settings.home),
        "KEEL_DATABASE_URL": None,
        "KEEL_SERVER_URL": None,
    }
    shown = CliRunner().invoke(app, ["jobs", "show", job.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "stages: data " in shown.stdout and "gates " in shown.stdout
    as_json = CliRunner().invoke(app, ["jobs", "show", job.id, "--json"], env=env)
    assert json.loads(as_json.stdout)["result"]["stages"] == stages
