"""The in-process backends: ``inline`` (the caller's thread) and ``process`` (a spawned
worker process, reused for the executor's calls, killed on timeout or cancel)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Callable
from typing import Any, TypeVar

from keel.executors.base import Executor, Task

__all__ = ["InlineExecutor", "ProcessExecutor"]

T = TypeVar("T")


class _Done(Task[T]):
    """A call that already ran (inline): its value or its exception."""

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self._error: BaseException | None = None
        try:
            self._result: T | None = fn(*args, **kwargs)
        except Exception as exc:  # raised again by result(), like the other backends
            self._result, self._error = None, exc

    def _wait(self, seconds: float) -> bool:
        return True

    def _value(self) -> T:
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def cancel(self) -> bool:
        return False


class InlineExecutor(Executor):
    """Runs the call in the caller's thread at :meth:`submit`: no isolation, and nothing
    to time out or cancel (the call has finished when :meth:`submit` returns)."""

    name = "inline"

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Task[T]:
        return _Done(fn, args, kwargs)


class _Future(Task[T]):
    def __init__(self, owner: ProcessExecutor, future: concurrent.futures.Future[T]):
        self._owner, self._future = owner, future

    def _wait(self, seconds: float) -> bool:
        done, _ = concurrent.futures.wait([self._future], timeout=seconds)
        return bool(done)

    def _value(self) -> T:
        return self._future.result()

    def cancel(self) -> bool:
        if self._future.cancel():
            return True  # it had not started
        self._owner.kill()
        return True


class ProcessExecutor(Executor):
    """One spawned worker process (a fresh interpreter: the callable is imported there, so
    it must be importable; a crash of native code fails the call, not the caller). The
    process is started at the first call and reused by later ones until :meth:`close`."""

    name = "process"

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Task[T]:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=context)
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except concurrent.futures.BrokenExecutor:  # the last call crashed it: start afresh
            self.kill()
            return self.submit(fn, *args, **kwargs)
        return _Future(self, future)

    def kill(self) -> None:
        """Stop the worker process now (running work is lost); the next call starts one."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # The standard pool cannot interrupt a running call: terminate its process.
        for process in list(pool._processes.values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
