"""The one executor interface: submit a callable with its arguments, wait for the result
with an optional timeout, cancel where the backend can stop running work.

Callables and arguments must be picklable (module-level functions, frames, dicts) so the
same call runs in this thread, a spawned process or a Ray worker unchanged.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, TypeVar

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorName",
    "Task",
    "TaskCancelled",
    "TaskTimeout",
    "cancel_scope",
    "check_cancelled",
]

T = TypeVar("T")

ExecutorName = Literal["inline", "process", "ray"]
#: Every backend ``KEEL_EXECUTOR`` may name.
EXECUTORS: tuple[ExecutorName, ...] = ("inline", "process", "ray")

#: How often a waiting caller looks at its cancel event (seconds).
POLL_S = 0.1


class TaskTimeout(TimeoutError):
    """The task did not finish within its timeout; it was cancelled where the backend can."""


class TaskCancelled(Exception):
    """The caller's cancel event was set while the task ran; it was stopped where possible."""


#: The cancel event of the work this context does (a job's, set by the job runner): the
#: default of :meth:`Executor.run`, so code between the job and its executor calls (a
#: retraining's fit, each search trial) needs no extra argument to be cancellable.
_CANCEL: ContextVar[threading.Event | None] = ContextVar("keel_cancel", default=None)


@contextmanager
def cancel_scope(event: threading.Event) -> Iterator[threading.Event]:
    """Within the block, executor calls without their own ``cancel`` stop once ``event``
    is set (:class:`TaskCancelled`); :func:`check_cancelled` raises it likewise."""
    token = _CANCEL.set(event)
    try:
        yield event
    finally:
        _CANCEL.reset(token)


def check_cancelled() -> None:
    """Raise :class:`TaskCancelled` if the current :func:`cancel_scope`'s event is set
    (between steps that must not run after a cancel, e.g. registering a model)."""
    event = _CANCEL.get()
    if event is not None and event.is_set():
        raise TaskCancelled("cancelled")


class Task(ABC, Generic[T]):
    """One submitted call."""

    @abstractmethod
    def _wait(self, seconds: float) -> bool:
        """Block up to ``seconds``; True once the call has finished (value or error)."""

    @abstractmethod
    def _value(self) -> T:
        """The finished call's value, or its exception raised here."""

    @abstractmethod
    def cancel(self) -> bool:
        """Stop the call; False when the backend cannot (it then runs to its end)."""

    def result(self, timeout_s: float | None = None, cancel: threading.Event | None = None) -> T:
        """The call's value. Past ``timeout_s`` the call is cancelled and :class:`TaskTimeout`
        raised; once ``cancel`` is set, likewise with :class:`TaskCancelled`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = POLL_S if deadline is None else deadline - time.monotonic()
            step = max(0.0, min(POLL_S, left))
            if self._wait(step):
                return self._value()
            if cancel is not None and cancel.is_set():
                stopped = self.cancel()
                raise TaskCancelled(f"cancelled ({'stopped' if stopped else 'still running'})")
            if deadline is not None and time.monotonic() >= deadline:
                stopped = self.cancel()
                state = "stopped" if stopped else "it could not be stopped"
                raise TaskTimeout(f"did not finish within {timeout_s:g} s; {state}")


class Executor(ABC):
    """Where heavy work runs. Use as a context manager: :meth:`close` frees the backend's
    workers (a process pool's process; a Ray connection is kept for the process)."""

    name: ClassVar[ExecutorName]

    @abstractmethod
    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Task[T]:
        """Start ``fn(*args, **kwargs)``."""

    def run(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> T:
        """``fn(*args, **kwargs)`` on this backend, waited for (see :meth:`Task.result`);
        ``cancel`` defaults to the current :func:`cancel_scope`'s event."""
        event = cancel if cancel is not None else _CANCEL.get()
        if event is not None and event.is_set():
            raise TaskCancelled("cancelled before it started")
        return self.submit(fn, *args, **kwargs).result(timeout_s, event)

    def close(self) -> None:  # noqa: B027  (most backends hold nothing)
        """Free the backend's workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
