"""The registry of job kinds: a name → the function a worker runs for it.

Other packages register their kinds at import (``@job_kind("retrain.run")``); a worker
imports the modules listed in ``KEEL_JOBS_IMPORTS`` so that user code can add kinds too.
A kind's function receives the composition root's services (duck-typed here, so that this
domain module never imports ``keel.services``) and the job's JSON arguments, and returns a
JSON-able result. It must be idempotent: a job whose worker is killed runs again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidInput

__all__ = ["JobKind", "get_kind", "import_kind_modules", "job_kind", "kinds", "register_kind"]

JobFunction = Callable[[Any, dict[str, Any]], Any]
ArgsCheck = Callable[[Any, dict[str, Any]], None]


@dataclass(frozen=True)
class JobKind:
    """A registered kind: its function and an optional check of arguments at enqueue time
    (raise :class:`InvalidInput` naming the argument)."""

    name: str
    run: JobFunction
    check: ArgsCheck | None = None
    description: str = ""


_KINDS: dict[str, JobKind] = {}


def register_kind(
    name: str, run: JobFunction, *, check: ArgsCheck | None = None, description: str = ""
) -> JobKind:
    """Register (or replace) the job kind ``name``."""
    kind = JobKind(name, run, check, description or (run.__doc__ or "").strip().split("\n")[0])
    _KINDS[name] = kind
    return kind


def job_kind(name: str, *, check: ArgsCheck | None = None) -> Callable[[JobFunction], JobFunction]:
    """Decorator form of :func:`register_kind`."""

    def decorate(run: JobFunction) -> JobFunction:
        register_kind(name, run, check=check)
        return run

    return decorate


def get_kind(name: str, field: str = "kind") -> JobKind:
    """A registered kind; InvalidInput naming the known kinds otherwise."""
    kind = _KINDS.get(name)
    if kind is None:
        known = ", ".join(sorted(_KINDS)) or "none"
        raise InvalidInput(f"{field}: unknown job kind {name!r} (known: {known})", field=field)
    return kind


def kinds() -> list[JobKind]:
    """Every registered kind, by name."""
    return [_KINDS[name] for name in sorted(_KINDS)]


def import_kind_modules(modules: Iterable[str]) -> None:
    """Import the modules that register job kinds (``KEEL_JOBS_IMPORTS``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise InvalidInput(
                f"jobs_imports: cannot import {module!r}: {exc}", field="jobs_imports"
            ) from exc


# ---- built-in kinds ------------------------------------------------------------------------


def _check_monitor(services: Any, args: dict[str, Any]) -> None:
    name = args.get("monitor")
    if not isinstance(name, str) or not name:
        raise InvalidInput("args.monitor: the monitor's name is required", field="args.monitor")
    extra = sorted(set(args) - {"monitor"})
    if extra:
        raise InvalidInput(f"args: unexpected {extra} for monitor.run", field="args")
    services.monitors.get(name)  # NotFound now, not at the first firing


@job_kind("monitor.run", check=_check_monitor)
def run_monitor(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Run a monitor over the window ending now and store the run (R-MON-14)."""
    run = services.monitors.run(args["monitor"])
    return {"monitor": run.monitor, "run_id": run.id, "status": run.status}
