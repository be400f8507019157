"""Canary steps as a policy writes them: a share (``25``) or a share with its own dwell
(``{percent: 5, min_dwell: 1w}``), their checks, and the plan line of ``keel deploy show``.

R-DEP-02's reference plan holds 5 % for a week, then a weekly checkpoint per step: one
``min_dwell`` for every step cannot say that, so a step may carry its own. A step written
as a plain number keeps meaning "the policy's ``min_dwell``", and a policy of plain numbers
is stored exactly as before. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from keel._durations import Span, format_duration_s
from keel.errors import InvalidInput

__all__ = [
    "STEP_TAGS",
    "CanaryStep",
    "Step",
    "check_steps",
    "describe_plan",
    "own_dwell_s",
    "share_of",
]


class CanaryStep(BaseModel):
    """A canary step written as an object: its share and, optionally, its own dwell."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    percent: Annotated[float, Field(gt=0, le=100)]
    # Span, as the policy's other durations: bounded (≤ 3650d), so a typo is a 422 naming
    # steps[i].min_dwell instead of a dwell whose end overflows the stores' milliseconds
    min_dwell_s: Span | None = Field(default=None, alias="min_dwell")


#: The union's tags: they pick a step's type and are left out of error paths (pass them as
#: ``hide`` to keel._models.invalid_input), so a bad dwell is ``steps[0].min_dwell`` and a
#: bad number ``steps[1]``.
STEP_TAGS = ("step-number", "step-object")


def _kind(value: object) -> str:
    return STEP_TAGS[1] if isinstance(value, Mapping | CanaryStep) else STEP_TAGS[0]


#: One item of a policy's ``steps``: a percent, or a :class:`CanaryStep`.
Step = Annotated[
    Annotated[float, Field(gt=0, le=100), Tag(STEP_TAGS[0])]
    | Annotated[CanaryStep, Tag(STEP_TAGS[1])],
    Discriminator(_kind),
]


def share_of(step: float | CanaryStep) -> float:
    """The canary's percent of live traffic at ``step``."""
    return step.percent if isinstance(step, CanaryStep) else float(step)


def own_dwell_s(step: float | CanaryStep) -> int | None:
    """The step's own ``min_dwell`` (seconds), None when it uses the policy's."""
    return step.min_dwell_s if isinstance(step, CanaryStep) else None


def check_steps(
    steps: Sequence[float | CanaryStep], review_at: Sequence[float], max_step_s: int | None
) -> None:
    """Raise InvalidInput naming the first bad step (``steps[2]``, ``steps[0].min_dwell``)."""
    shares = [share_of(s) for s in steps]
    paths = [
        f"steps[{i}]" + (".percent" if _kind(s) == STEP_TAGS[1] else "")
        for i, s in enumerate(steps)
    ]
    for i in range(1, len(shares)):
        if shares[i] <= shares[i - 1]:
            raise InvalidInput("canary steps must increase", field=paths[i])
    if shares[-1] != 100:
        raise InvalidInput("the last canary step must be 100", field=paths[-1])
    if own_dwell_s(steps[-1]) is not None:
        # Reaching 100 % is the promotion: the rollout ends there, nothing dwells.
        raise InvalidInput(
            "the last step (100) is the promotion and has no dwell; keep the old version "
            "with retention.keep_previous",
            field=f"steps[{len(steps) - 1}].min_dwell",
        )
    for i, step in enumerate(steps):
        own = own_dwell_s(step)
        if own is not None and max_step_s is not None and own > max_step_s:
            # The step would count as exhausted (no improvement) before it could advance.
            raise InvalidInput(
                f"{format_duration_s(own)} is longer than max_step_duration "
                f"({format_duration_s(max_step_s)})",
                field=f"steps[{i}].min_dwell",
            )
    if bad := [i for i, share in enumerate(review_at) if share not in shares[:-1]]:
        raise InvalidInput("not a canary step below 100", field=f"review_at[{bad[0]}]")


def describe_plan(policy: Mapping[str, Any], rollout: Mapping[str, Any] | None) -> str | None:
    """One line for ``keel deploy show``: a canary's phases with their dwells, the current
    one in brackets (``[shadow 1w] → 5% for 1w → … → 50% for 1w, review → 100%``).

    ``policy`` is the stored document (durations in seconds), ``rollout`` the candidate's
    stored rollout state; None for other strategies.
    """
    if policy.get("strategy") != "canary" or not policy.get("steps"):
        return None
    default_s = int(policy.get("min_dwell", 600))
    review = {float(s) for s in policy.get("review_at") or ()}
    phase, at = (rollout or {}).get("phase"), (rollout or {}).get("step")
    parts: list[tuple[str, bool]] = []
    if policy.get("shadow"):
        parts.append(
            (f"shadow {format_duration_s(int(policy['shadow']['duration']))}", phase == "shadow")
        )
    steps = policy["steps"]
    for i, raw in enumerate(steps):
        share = float(raw["percent"] if isinstance(raw, Mapping) else raw)
        text = f"{share:g}%"
        if i < len(steps) - 1:
            own = raw.get("min_dwell") if isinstance(raw, Mapping) else None
            text += f" for {format_duration_s(int(own if own is not None else default_s))}"
        if share in review:
            text += ", review"
        parts.append((text, phase == "live" and at == i))
    return " → ".join(f"[{text}]" if current else text for text, current in parts)
