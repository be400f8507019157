"""The ``ray`` backend: each call is a Ray task (``KEEL_EXECUTOR=ray``).

``KEEL_RAY_ADDRESS`` names a running cluster (``ray.init(address=...)``); without it a
local Ray starts on this machine's cores, loopback only, without the dashboard. A Ray
this process already initialised is used as it is. Timeouts and cancel use
``ray.cancel(force=True)``, which kills the worker running the task.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from keel.errors import Unavailable
from keel.executors.base import Executor, Task

__all__ = ["INSTALL_HINT", "RayExecutor", "connect_ray", "ray_installed"]

T = TypeVar("T")

INSTALL_HINT = "pip install 'keelml[ray]'"


def ray_installed() -> bool:
    """Whether ``import ray`` would work (without importing it: that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def connect_ray(
    address: str | None, *, needed_by: str = "KEEL_EXECUTOR=ray", field: str = "executor"
) -> Any:
    """The ``ray`` module, initialised once per process (keel's one Ray start-up).

    Used by this backend and by the features' Ray engine (``keel.features._ray``).
    ``address`` (``KEEL_RAY_ADDRESS``) joins a running cluster; without it a local Ray
    starts on this machine's cores, loopback only, without the dashboard. Without Ray
    installed: Unavailable saying ``needed_by`` needs it, naming ``field``.
    """
    try:
        import ray
    except ImportError as exc:
        raise Unavailable(
            f"{needed_by} needs Ray, which is not installed: {INSTALL_HINT}", field=field
        ) from exc
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                log_to_driver=False,
                _node_ip_address="127.0.0.1",
            )
    return ray


class _RayTask(Task[T]):
    def __init__(self, ray: Any, ref: Any):
        self._ray, self._ref = ray, ref

    def _wait(self, seconds: float) -> bool:
        ready, _ = self._ray.wait([self._ref], timeout=seconds)
        return bool(ready)

    def _value(self) -> T:
        # A task's exception comes back as a RayTaskError that is also an instance of
        # the original class, so callers catch what the function raised.
        return self._ray.get(self._ref)  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        self._ray.cancel(self._ref, force=True)
        return True


class RayExecutor(Executor):
    """Calls as Ray tasks of one CPU, never retried by Ray (a job's retries are keel's)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self._ray = connect_ray(address)
        # One remote function applies any callable: ray.remote takes Python functions
        # only, not builtins or callable objects.
        self._apply = self._ray.remote(num_cpus=1, max_retries=0)(_apply)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Task[T]:
        return _RayTask(self._ray, self._apply.remote(fn, args, kwargs))


def _apply(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return fn(*args, **kwargs)
