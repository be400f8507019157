"""Issue #17 acceptance: kill -9 of a real `keel worker` in the middle of a retraining that
checkpoints (R-TRN-25: the assembled rows, then each search trial as a finished child run);
a restarted worker completes the job once — one run finished, one version registered, one
retraining in the decision log, no finished trial trained twice."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import tests.automation.triggerdata as data
from tests.automation.conftest import wait_status
from tests.automation.test_worker_process import worker

from keel.automation.retrain import job_key
from keel.config import Settings
from keel.demo.data import TARGET
from keel.services import Services, open_services
from keel.tracking.models import RunStatus

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
N_TRIALS = 3
ARGS = {
    "model": "churn",
    "trigger": "churn-loop",
    "retrain": {
        "train": "acceptance_train:slow",
        "label": "churn",
        "window": "10d",
        "executor": "inline",  # in the worker's job thread: the kill takes the fit with it
        "search": {
            "n_trials": N_TRIALS,
            "seed": 1,
            "space": {"C": {"type": "float", "low": 0.01, "high": 10, "log": True}},
        },
        "gates": {
            "latency": {"enabled": False},
            "equivalence": {"enabled": False},
            "stress": {"enabled": False},
            "skew": {"enabled": False},
            "margin": {"min_improvement": -0.05},
            "floor": {"min_auc": 0.7},
        },
    },
}


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Services:
    """churn v1 @champion and five days of labelled traffic before now (wall clock: the
    worker subprocess reads it)."""
    monkeypatch.syspath_prepend(str(HERE))  # `acceptance_train` is checked at enqueue
    services = open_services(Settings(home=tmp_path / "keel"))
    train, production = data.churn_frames()
    model = data.register_churn(services, train)
    rows = production.iloc[:1000]
    end = data.now_ms() - data.HOUR_MS
    ids = data.serve(services, model, rows, end - 5 * data.DAY_MS, end, prefix="k")
    data.label(services, ids, rows[TARGET])
    return services


def _trials(services: Services, run_id: str) -> list[int]:
    children = _runs(services, f"tags.`keel.retrain.parent` = '{run_id}'")
    return sorted(int(r.name.split()[-1]) for r in children if r.status == RunStatus.FINISHED)


def test_worker_killed_mid_retraining_completes_it_once(logged: Services, tmp_path: Path) -> None:
    services = logged
    log = tmp_path / "worker.log"
    job = services.jobs.enqueue("retrain.run", ARGS, key="acceptance-kill", max_retries=0)
    key = job_key(ARGS)
    with worker(services, log) as first:
        running = wait_status(services.jobs, job.id, {"running"}, timeout_s=60)
        # the checkpoint marker: the parent run exists and one trial has finished
        deadline = time.monotonic() + 90
        run_id = None
        while time.monotonic() < deadline:
            run_id = _parent(services, key)
            if run_id is not None and _trials(services, run_id):
                break
            assert first.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        assert run_id is not None and _trials(services, run_id), log.read_text()[-3000:]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    done_before = _trials(services, run_id)
    assert 1 <= len(done_before) < N_TRIALS  # killed mid-search
    assert services.jobs.get(job.id).status == "running"  # as the dead worker left it
    assert services.registry.get_model("churn").aliases == {"champion": 1}
    assert [v.version for v in services.registry.list_versions("churn")] == [1]
    time.sleep(max(0.0, (running.lease_until_ms or 0) / 1000 - time.time()) + 0.5)
    with worker(services, log):
        finished = wait_status(services.jobs, job.id, {"succeeded", "failed"}, timeout_s=120)
    assert finished.status == "succeeded", (finished.error, log.read_text()[-3000:])
    assert finished.attempts == 2
    assert any("lease expired" in line.message for line in finished.logs)
    assert "resuming retraining" in log.read_text()
    # once: one parent run, finished; every trial once; one version; one retraining
    parents = _runs(services, f"tags.`keel.retrain.key` = '{key}'")
    assert [(p.id, p.status) for p in parents] == [(run_id, RunStatus.FINISHED)]
    assert _trials(services, run_id) == list(range(N_TRIALS))
    assert [v.version for v in services.registry.list_versions("churn")] == [2, 1]
    assert services.registry.get_version("churn", 2).run_id == run_id
    [retraining] = services.decisions.query(model="churn", kind="retraining")
    assert retraining.summary.startswith("retrained churn v2")
    assert len(services.decisions.query(model="churn", kind="gate")) == 1
    assert finished.result["version"] == 2 and finished.result["run_id"] == run_id
    services.close()


def _runs(services: Services, where: str) -> list[Any]:
    """Runs of the retraining experiment matching ``where`` (none before it exists)."""
    from keel.errors import NotFound

    try:
        return list(services.tracking.search_runs(["retrain-churn"], where, None, 100).items)
    except NotFound:
        return []


def _parent(services: Services, key: str) -> str | None:
    runs = _runs(services, f"tags.`keel.retrain.key` = '{key}'")
    return runs[0].id if runs else None
