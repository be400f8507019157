"""The executors (KEEL_EXECUTOR=inline|process|ray): one interface, results and errors
come back, timeouts and cancel stop the work where the backend can, bad settings fail at
start naming KEEL_EXECUTOR."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keel.errors import InvalidInput
from keel.executors import TaskCancelled, TaskTimeout, open_executor
from keel.executors.local import ProcessExecutor


@pytest.mark.parametrize("name", ["inline", "process"])
def test_a_call_returns_its_value_and_raises_its_error(name: str) -> None:
    with open_executor(name) as executor:
        assert executor.name == name
        assert executor.run(operator.add, 2, 3) == 5
        assert executor.run(sorted, [3, 1, 2], reverse=True) == [3, 2, 1]
        with pytest.raises(ZeroDivisionError):
            executor.run(operator.truediv, 1, 0)


def test_the_process_backend_runs_elsewhere_and_reuses_its_process() -> None:
    with open_executor("process") as executor:
        first = executor.run(os.getpid)
        assert first != os.getpid()
        assert executor.run(os.getpid) == first  # one process for the executor's calls


def test_a_process_call_past_its_timeout_is_stopped() -> None:
    with open_executor("process") as executor:
        pid = executor.run(os.getpid)
        started = time.monotonic()
        with pytest.raises(TaskTimeout, match="within 0.5 s; stopped"):
            executor.run(time.sleep, 60, timeout_s=0.5)
        assert time.monotonic() - started < 10
        assert not _alive(pid)  # the worker was killed, not left sleeping
        assert executor.run(operator.mul, 6, 7) == 42  # a fresh process takes over


def test_a_process_call_is_cancelled_by_its_event() -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    with open_executor("process") as executor:
        started = time.monotonic()
        with pytest.raises(TaskCancelled):
            executor.run(time.sleep, 60, cancel=cancel)
        assert time.monotonic() - started < 10


def test_a_crashed_process_fails_the_call_and_the_next_call_starts_afresh() -> None:
    from concurrent.futures.process import BrokenProcessPool

    executor = ProcessExecutor()
    try:
        with pytest.raises(BrokenProcessPool):
            executor.run(os._exit, 3)  # native-code crash stand-in: the process just dies
        assert executor.run(operator.add, 1, 1) == 2
    finally:
        executor.close()


def test_inline_runs_in_the_callers_thread() -> None:
    with open_executor("inline") as executor:
        assert executor.run(threading.get_ident) == threading.get_ident()
        task = executor.submit(operator.add, 1, 2)
        assert task.cancel() is False and task.result() == 3  # nothing left to cancel


def test_an_unknown_executor_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        open_executor("threads")
    assert caught.value.field == "executor" and "inline, process, ray" in caught.value.message


def _keel(
    args: list[str], env: dict[str, str], prelude: str = ""
) -> subprocess.CompletedProcess[str]:
    run = f"from keel.cli.main import main; sys.argv = ['keel', *{args!r}]; main()"
    code = f"{prelude}import sys; {run}"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def _env(tmp_path: Path, executor: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return {**env, "KEEL_HOME": str(tmp_path / "keel"), "KEEL_EXECUTOR": executor}


def test_an_unknown_keel_executor_is_a_startup_error_exit_2(tmp_path: Path) -> None:
    done = _keel(["jobs", "list"], _env(tmp_path, "threads"))
    assert done.returncode == 2, done.stderr
    assert "KEEL_EXECUTOR=threads" in done.stderr and "Traceback" not in done.stderr


def test_keel_executor_ray_without_ray_says_how_to_install_it(tmp_path: Path) -> None:
    # sys.modules['ray'] = None: this interpreter behaves as if Ray were not installed
    done = _keel(["jobs", "list"], _env(tmp_path, "ray"), "import sys; sys.modules['ray'] = None; ")
    assert done.returncode == 2, done.stderr
    assert "KEEL_EXECUTOR=ray" in done.stderr and "pip install 'keelml[ray]'" in done.stderr
    assert "Traceback" not in done.stderr


def _alive(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True
