"""The ``triggers.evaluate`` job kind: the scheduler evaluates every due trigger with it."""

from __future__ import annotations

from typing import Any

from keel.automation.kinds import job_kind
from keel.errors import InvalidInput

__all__ = ["evaluate_triggers"]


def _check(services: Any, args: dict[str, Any]) -> None:
    extra = sorted(set(args) - {"trigger"})
    if extra:
        raise InvalidInput(f"args: unexpected {extra} for triggers.evaluate", field="args")
    if "trigger" in args:
        services.triggers.get(args["trigger"])  # NotFound now, not at the first run


@job_kind("triggers.evaluate", check=_check)
def evaluate_triggers(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Evaluate every enabled trigger whose min_interval has passed (or the one named)."""
    if "trigger" in args:
        done = [services.triggers.evaluate(args["trigger"])]
    else:
        done = services.triggers.evaluate_due()
    return {
        "evaluated": len(done),
        "fired": [e.trigger for e in done if e.fired],
        "jobs": [e.job_id for e in done if e.job_id],
    }
