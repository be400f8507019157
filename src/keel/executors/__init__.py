"""Where heavy work runs (``KEEL_EXECUTOR``): ``inline`` in the caller's thread,
``process`` in a spawned worker process (the default), ``ray`` as Ray tasks.

One interface for all three (:class:`Executor`): ``submit(fn, *args)`` → :class:`Task`,
``task.result(timeout_s, cancel)``, ``task.cancel()``; ``run`` does both. See
docs/automation.md#executors.
"""

from __future__ import annotations

from keel.errors import InvalidInput
from keel.executors.base import (
    EXECUTORS,
    Executor,
    ExecutorName,
    Task,
    TaskCancelled,
    TaskTimeout,
    cancel_scope,
    check_cancelled,
)

__all__ = [
    "EXECUTORS",
    "Executor",
    "ExecutorName",
    "Task",
    "TaskCancelled",
    "TaskTimeout",
    "cancel_scope",
    "check_cancelled",
    "open_executor",
]


def open_executor(name: str, *, ray_address: str | None = None) -> Executor:
    """A new executor of backend ``name``; InvalidInput naming ``executor`` for an unknown
    name, Unavailable when ``ray`` is asked for and not installed."""
    if name == "inline":
        from keel.executors.local import InlineExecutor

        return InlineExecutor()
    if name == "process":
        from keel.executors.local import ProcessExecutor

        return ProcessExecutor()
    if name == "ray":
        from keel.executors.ray_backend import RayExecutor

        return RayExecutor(ray_address)
    raise InvalidInput(
        f"executor: expected one of {', '.join(EXECUTORS)}, got {name!r}", field="executor"
    )
