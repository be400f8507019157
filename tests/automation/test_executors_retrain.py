"""retrain.run on each executor with a real model on the telco churn rows: the fit runs
where KEEL_EXECUTOR (or the spec's ``executor``) says, and the version is the same kind of
model wherever it was trained."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tests.automation.retrain_train as user_code
import tests.automation.test_retrain as base
from tests.automation.conftest import drain

from keel.config import Settings
from keel.errors import InvalidInput
from keel.services import Services, open_services

churn, run_job, spec = base.churn, base.run_job, base.spec

#: A copy of the test train function under a top-level name a spawned process or a Ray
#: worker can import (``tests.`` is shadowed by a site-packages ``tests`` package there).
MODULE = "executor_user_train"


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("user-code")
    shutil.copy(user_code.__file__, where / f"{MODULE}.py")
    return where


def _logged(home: Path, rows: Any, **env: str) -> Services:
    base.register_retrain_kind()
    services = open_services(Settings(home=home, **env))  # type: ignore[arg-type]
    base.register_champion(services, rows.iloc[:600])
    base.log_days(services, rows.iloc[600:1800], base.now_ms() - 12 * base.DAY_MS, 10)
    return services


@pytest.fixture
def on_path(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.syspath_prepend(str(user_dir))
    yield f"{MODULE}:train"


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_retrain_runs_on_the_executor_keel_executor_names(
    executor: str, tmp_path: Path, churn: Any, on_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_EXECUTOR", executor)
    import executor_user_train as here  # the module as this process sees it

    here.SEEN.clear()
    services = _logged(tmp_path / "keel", churn)
    try:
        assert services.settings.executor == executor
        job = run_job(services, {"model": "churn", "retrain": spec(train=on_path)})
        assert job.status == "succeeded", job.traceback
        # inline: train ran in this process and saw the 840 training rows; process: not here
        assert [len(frame) for frame, _ in here.SEEN] == ([840] if executor == "inline" else [])
        run = services.tracking.get_run(job.result["run_id"])
        assert run.metrics["holdout.auc"] > 0.7 and run.metrics["rows.train"] == 840
    finally:
        services.close()


def test_a_train_function_raising_in_a_pool_process_fails_at_once_with_its_traceback(
    tmp_path: Path, churn: Any, on_path: str
) -> None:
    services = _logged(tmp_path / "keel", churn)
    try:
        services.jobs.backoff_s = 0.0
        broken = on_path.replace(":train", ":broken")
        args = {"model": "churn", "retrain": spec(train=broken, executor="process")}
        queued = services.jobs.enqueue("retrain.run", args)
        drain(services.jobs)
        job = services.jobs.get(queued.id)
        assert (job.status, job.attempts) == ("failed", 1)  # not retried
        # the pool process's traceback reaches the job: the user's line, then keel's wrapper
        assert "blew up on purpose" in (job.traceback or "")
        assert "TrainFunctionFailed" in (job.traceback or "")
    finally:
        services.close()


def test_the_specs_executor_overrides_keel_executor(
    tmp_path: Path, churn: Any, on_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_EXECUTOR", "process")
    import executor_user_train as here

    here.SEEN.clear()
    services = _logged(tmp_path / "keel", churn)
    try:
        job = run_job(
            services, {"model": "churn", "retrain": spec(train=on_path, executor="inline")}
        )
        assert job.status == "succeeded", job.traceback
        assert len(here.SEEN) == 1
    finally:
        services.close()


def test_a_fit_past_its_timeout_fails_the_job_and_keeps_the_champion(
    tmp_path: Path, churn: Any, user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (user_dir / "slow_user_train.py").write_text(
        "import time\n\ndef train(frame, params):\n    time.sleep(60)\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(user_dir))
    services = _logged(tmp_path / "keel", churn)
    try:
        started = time.monotonic()
        retrain = spec(train="slow_user_train:train", executor="process", fit_timeout="2s")
        job = run_job(services, {"model": "churn", "retrain": retrain})
        assert time.monotonic() - started < 30
        assert job.status == "failed" and "TaskTimeout" in (job.error or "")
        assert "within 2 s; stopped" in (job.error or "")
        assert services.registry.get_model("churn").aliases == {"champion": 1}
        [decision] = services.decisions.query(model="churn", kind="retraining")
        assert "failed" in decision.summary and "TaskTimeout" in decision.details["error"]
    finally:
        services.close()


def test_cancelling_a_running_retraining_kills_its_fit_and_registers_nothing(
    tmp_path: Path, churn: Any, user_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "fit.pid"
    (user_dir / "sleepy_user_train.py").write_text(
        "import os, time\n\ndef train(frame, params):\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    time.sleep(120)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(user_dir))
    services = _logged(tmp_path / "keel", churn)
    # `keel jobs cancel` from another process: its own services, which run nothing here
    other = open_services(services.settings)
    try:
        retrain = spec(train="sleepy_user_train:train", executor="process")
        job = services.jobs.enqueue("retrain.run", {"model": "churn", "retrain": retrain})
        worker = threading.Thread(target=services.jobs.run, args=(job.id,))
        worker.start()
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.05)
        fit_pid = int(pid_file.read_text())
        assert fit_pid != os.getpid()
        cancelled_at = time.monotonic()
        other.jobs.cancel(job.id, actor="ana")
        worker.join(timeout=20)
        assert not worker.is_alive()
        assert time.monotonic() - cancelled_at < 5  # the heartbeat looks every second
        assert not _alive(fit_pid)  # the fit's process was killed, not left sleeping
        final = services.jobs.get(job.id)
        assert final.status == "cancelled" and final.attempts == 1
        assert any("stopped after cancel" in line.message for line in final.logs)
        assert [v.version for v in services.registry.list_versions("churn")] == [1]
        assert services.registry.get_model("churn").aliases == {"champion": 1}
        [decision] = services.decisions.query(model="churn", kind="retraining")
        assert decision.summary.startswith("retraining churn cancelled")
        run = services.tracking.get_run(decision.details["run_id"])
        assert run.status == "KILLED"
    finally:
        other.close()
        services.close()


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs after up to 5 s (a killed one is reaped)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"executor": "threads"}, "args.retrain.executor"),
        ({"fit_timeout": "soon"}, "args.retrain.fit_timeout"),
    ],
)
def test_a_bad_executor_or_timeout_is_refused_at_enqueue(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    base.register_retrain_kind()
    services = open_services(Settings(home=tmp_path / "keel"))
    try:
        with pytest.raises(InvalidInput) as caught:
            services.jobs.enqueue("retrain.run", {"model": "churn", "retrain": spec(**changes)})
        assert caught.value.field == field
        assert services.jobs.list_jobs() == []
    finally:
        services.close()


@pytest.fixture
def local_ray(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A one-CPU Ray on loopback whose workers can import the user module (they inherit
    PYTHONPATH from this process when Ray starts)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'keelml[ray]'")
    if ray.is_initialized():
        ray.shutdown()  # started by another test without the user module on its path
    path = os.pathsep.join([str(user_dir), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.mark.slow  # ~19 s here, ~7 s of it starting Ray
def test_retrain_runs_as_a_ray_task(
    tmp_path: Path, churn: Any, on_path: str, local_ray: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_EXECUTOR", "ray")
    import executor_user_train as here

    here.SEEN.clear()
    services = _logged(tmp_path / "keel", churn)
    try:
        started = time.monotonic()
        job = run_job(services, {"model": "churn", "retrain": spec(train=on_path)})
        assert job.status == "succeeded", job.traceback
        assert here.SEEN == []  # trained in a Ray worker
        run = services.tracking.get_run(job.result["run_id"])
        assert run.metrics["holdout.auc"] > 0.7 and run.metrics["rows.train"] == 840
        assert time.monotonic() - started < 20
    finally:
        services.close()
