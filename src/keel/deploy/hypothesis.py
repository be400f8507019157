"""The pre-registered hypothesis of a deployment (R-DEP-17): written in the policy, frozen.

A policy's ``hypothesis:`` block says what the experiment is meant to show before any
traffic is served: the statement, the primary metric, the expected direction and minimum
effect, the planned sample size (checked against :mod:`keel.deploy.samplesize` when the
baseline is given) and the decision rule. It may be amended only until the deployment
has served its first logged prediction; after that a change is a 409 (it was registered).
The verdict compares the controller's last metric check with the registered effect.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = ["MAX_SAMPLES", "Hypothesis", "amend_hypothesis", "check_plan", "hypothesis_verdict"]

#: The most samples a policy may name (per arm, per step, per guardrail): beyond any
#: traffic keel serves, and refused naming the field rather than stored as given.
MAX_SAMPLES = 1_000_000_000

DEFAULT_RULE = (
    "ship when the confidence interval of the difference lies beyond the minimum effect "
    "in the expected direction and every guardrail passes; otherwise keep the primary"
)


class Hypothesis(BaseModel):
    """What the experiment is registered to test (the ``hypothesis:`` policy block)."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=2_000)
    metric: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    direction: Literal["increase", "decrease"] = "increase"
    minimum_effect: float = Field(gt=0, description="Absolute, or a fraction when relative.")
    relative: bool = False
    baseline: float | None = Field(
        default=None, description="Primary's expected value: a proportion, or a mean with sd."
    )
    sd: float | None = Field(default=None, gt=0, description="Outcome s.d. (a mean metric).")
    planned_samples_per_arm: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    decision_rule: str = Field(default=DEFAULT_RULE, min_length=1, max_length=2_000)


def check_plan(hypothesis: Hypothesis, alpha: float, power: float) -> int | None:
    """The samples per arm the hypothesis needs (None without a ``baseline``); raises
    InvalidInput naming ``hypothesis.planned_samples_per_arm`` when the plan is smaller.

    Proportions (no ``sd``): ``n = (z_{α/2}+z_β)²·2p(1-p)/δ²`` (R-DEP-12); means: σ² for p(1-p).
    """
    from keel.deploy.samplesize import sample_size_means, sample_size_proportions

    if hypothesis.baseline is None:
        return None
    kind: Literal["absolute", "relative"] = "relative" if hypothesis.relative else "absolute"
    mde = hypothesis.minimum_effect * (1 if hypothesis.direction == "increase" else -1)
    try:
        if hypothesis.sd is None:
            needed = sample_size_proportions(
                hypothesis.baseline, mde, mde_kind=kind, alpha=alpha, power=power
            ).n
        else:
            needed = sample_size_means(
                hypothesis.sd,
                abs(mde),
                mde_kind=kind,
                baseline=hypothesis.baseline,
                alpha=alpha,
                power=power,
            ).n
    except InvalidInput as exc:
        field = f"hypothesis.{exc.field or 'baseline'}".replace(".mde", ".minimum_effect")
        raise InvalidInput(exc.message, field=field) from None
    planned = hypothesis.planned_samples_per_arm
    if planned is not None and planned < needed:
        raise InvalidInput(
            f"{planned} is below the {needed} per arm "
            f"needed to detect {hypothesis.minimum_effect:g} "
            f"({kind}) at alpha={alpha:g}, power={power:g}",
            field="hypothesis.planned_samples_per_arm",
        )
    return needed


def _number(value: Any) -> float:
    return float(value) if value is not None else math.nan


def hypothesis_verdict(
    hypothesis: dict[str, Any] | None, metric: dict[str, Any] | None, samples: int | None
) -> dict[str, Any]:
    """``supported``, ``not_supported`` or ``inconclusive`` (or ``no_hypothesis``).

    ``metric`` is the controller's last metric check of the candidate (primary, candidate,
    difference, low, high: the CI of the difference in the metric's better direction);
    ``samples`` the smaller arm's labelled rows. The CI is turned into the raw
    ``candidate - primary`` scale, then into the registered direction, and compared with
    the minimum effect (relative effects scale by the primary's value).
    """
    if not hypothesis:
        return {"verdict": "no_hypothesis", "reason": "the policy registered no hypothesis"}
    checked = Hypothesis.model_validate(hypothesis)
    if not metric or metric.get("name") != checked.metric:
        return {"verdict": "inconclusive", "reason": f"no evaluation of {checked.metric} yet"}
    primary, candidate = _number(metric.get("primary")), _number(metric.get("candidate"))
    low, high, diff = (_number(metric.get(k)) for k in ("low", "high", "difference"))
    raw = candidate - primary
    flipped = math.isfinite(diff) and math.isfinite(raw) and abs(diff + raw) < abs(diff - raw)
    raw_low, raw_high = (-high, -low) if flipped else (low, high)
    sign = 1.0 if checked.direction == "increase" else -1.0
    lo, hi = sorted((sign * raw_low, sign * raw_high))
    effect = checked.minimum_effect * (abs(primary) if checked.relative else 1.0)
    out: dict[str, Any] = {
        "observed_effect": sign * raw,
        "ci_low": lo,
        "ci_high": hi,
        "minimum_effect": effect,
        "samples_per_arm": samples,
        "planned_samples_per_arm": checked.planned_samples_per_arm,
    }
    planned = checked.planned_samples_per_arm
    if planned is not None and (samples or 0) < planned:
        out.update(verdict="inconclusive", reason=f"{samples or 0} of {planned} planned samples")
    elif lo > effect:
        out.update(verdict="supported", reason="the whole CI lies beyond the minimum effect")
    elif hi < effect:
        out.update(verdict="not_supported", reason="the whole CI lies short of the minimum effect")
    else:
        out.update(verdict="inconclusive", reason="the CI straddles the minimum effect")
    return out


def amend_hypothesis(
    service: DeploymentService, name: str, hypothesis: dict[str, Any], actor: str | None = None
) -> dict[str, Any]:
    """Replace ``name``'s hypothesis while nothing has been served yet; returns it.

    InvalidInput names the ``hypothesis.*`` field; Conflict (409) when the deployment is
    finished or has logged a prediction (the hypothesis is pre-registered from then on),
    or changed concurrently.
    """
    from keel.deploy.models import FINISHED
    from keel.deploy.policy import parse_policy
    from keel.deploy.report import logged_rows
    from keel.errors import Conflict

    current = service.store.get_deployment(name)
    if current.status in FINISHED:
        raise Conflict(f"deployment {name!r} is already {current.status}", field="hypothesis")
    checked = parse_policy({**current.policy, "hypothesis": hypothesis}).hypothesis
    assert checked is not None
    service.check_metric("hypothesis.metric", checked.metric)
    served = sum(
        logged_rows(
            service, current, list(current.versions), current.created_at_ms, service.clock() + 1
        ).values()
    )
    if served:
        raise Conflict(
            f"hypothesis: deployment {name!r} has served {served} predictions; its "
            "hypothesis is pre-registered and frozen (start a new deployment to test another)",
            field="hypothesis",
        )
    document = checked.model_dump(mode="json", exclude_none=True)
    at = service.clock()
    record = service.decision_log.build(
        "hypothesis_registered",
        current.model,
        f"hypothesis of {name!r} amended before any traffic by {actor or 'unknown'}: "
        f"{checked.statement}",
        {
            "hypothesis": document,
            "before": current.state.get("hypothesis") or current.policy.get("hypothesis"),
        },
        actor or "unknown",
        name,
        at_ms=at,
    )
    service.store.update_deployment(
        name,
        current.version,
        status=current.status,
        state={**current.state, "hypothesis": document},
        at_ms=at,
        decisions=[record],
    )
    return document
