"""The deployment policy: what a YAML/JSON rollout file may say, validated once, at creation.

The issue's minimal canary policy is accepted as written; defaults fill the
rest. Every mistake raises :class:`keel.errors.InvalidInput` whose ``field`` is
the path of the offending value (``arms[1].weight``, ``guardrails.foo``), so
the API answers 422 and the CLI exits 2 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from keel._documents import load_document
from keel._durations import MAX_DURATION_S, Span
from keel._models import MAX_VERSION, invalid_input
from keel.automation.timing import Timing
from keel.deploy.checkpoints import Stateful, as_stateful
from keel.deploy.hypothesis import MAX_SAMPLES, Hypothesis, check_plan
from keel.deploy.rollout_steps import STEP_TAGS, Step, check_steps, own_dwell_s, share_of
from keel.errors import InvalidInput

__all__ = [
    "MAX_DURATION_S",
    "Analysis",
    "Arm",
    "BlueGreen",
    "DeploymentPolicy",
    "ErrorRateGuard",
    "Guardrails",
    "LatencyGuard",
    "MetricGuard",
    "Retention",
    "SecondaryMetric",
    "ShadowPhase",
    "load_policy",
    "parse_policy",
]

Strategy = Literal["shadow", "canary", "ab", "blue_green"]
Role = Literal["primary", "canary", "shadow", "challenger"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
Percent = Annotated[float, Field(ge=0, le=100)]
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
_WEEK_S = 7 * 86_400
Samples = Annotated[int, Field(ge=1, le=MAX_SAMPLES)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Arm(_Model):
    """One arm: a version or an alias of the deployment's model, its role and traffic share."""

    name: Name | None = Field(
        default=None, description="Default: the role (role-2, … if repeated)."
    )
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    alias: Name | None = None
    role: Role
    weight: Percent | None = Field(
        default=None, description="Percent of live traffic; derived for canary/blue_green/shadow."
    )

    @model_validator(mode="after")
    def _one_target(self) -> Arm:
        if (self.version is None) == (self.alias is None):
            raise InvalidInput("give exactly one of version or alias", field="version")
        return self


class ErrorRateGuard(_Model):
    """Roll back when the candidate's error rate exceeds the primary's by more than this."""

    max_increase: float = Field(default=0.01, ge=0, le=1)
    for_s: Span = Field(default=0, alias="for")
    min_samples: Samples = 100


class LatencyGuard(_Model):
    """Roll back when p99 candidate / primary stays above ``max_ratio`` for ``for`` (R-DEP-08)."""

    max_ratio: float = Field(default=2.0, ge=1)
    for_s: Span = Field(default=300, alias="for")
    min_samples: Samples = 100


class MetricGuard(_Model):
    """The model metric from feedback; ship only with at least ``min_improvement`` (R-DEP-03)."""

    name: Name
    min_improvement: float = Field(default=0.0, ge=0)
    relative: bool = False
    higher_is_better: bool = True


class SecondaryMetric(_Model):
    """A metric that must not regress even when the main one improves (R-DEP-13)."""

    name: Name
    max_decrease: float = Field(default=0.0, ge=0)
    relative: bool = False
    higher_is_better: bool = True


class Guardrails(_Model):
    """Safety guardrails (error rate, p99) roll back; metric rules decide ship / keep / back."""

    error_rate: ErrorRateGuard = Field(default_factory=ErrorRateGuard)
    p99_latency: LatencyGuard = Field(default_factory=LatencyGuard)
    metric: MetricGuard | None = None
    secondary: list[SecondaryMetric] = Field(default_factory=list, max_length=20)


class Analysis(_Model):
    """How the metric is tested: always-valid sequential (default) or fixed horizon."""

    method: Literal["sequential", "fixed_horizon"] = "sequential"
    alpha: float = Field(default=0.05, gt=0, lt=1)
    power: float = Field(default=0.8, gt=0, lt=1)
    tau: float | None = Field(default=None, gt=0, description="mSPRT mixing s.d.")
    planned_samples_per_arm: Samples | None = None
    # R-DEP-15: per-segment results are always reported. None (not given): the default
    # columns keel.deploy.segments chooses from the logged inputs; [] opts out.
    segments: list[Name] | None = Field(
        default=None,
        max_length=20,
        description="Input columns to report per value; default: chosen from the logged "
        "inputs (keel.deploy.segments); [] reports none.",
    )
    burn_in_s: Span = Field(default=0, alias="burn_in")
    attribution_window_s: Span = Field(default=0, alias="attribution_window")
    cuped: dict[Literal["covariate"], Name] | None = Field(default=None, min_length=1)  # R-DEP-14
    hold_when_worse: bool = True  # an intermediate step waits while the estimate is negative


class ShadowPhase(_Model):
    """Mirror live traffic to the candidate, off the response path, before it serves anyone."""

    duration_s: Span = Field(default=86_400, alias="duration")
    min_samples: Samples = 1_000
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    queue_size: int = Field(default=1_000, ge=1, le=1_000_000)


class BlueGreen(_Model):
    """Both arms warm; switch all traffic at once, verify, switch back on a breach."""

    switch_after_s: Span | None = Field(default=None, alias="switch_after")
    verify_s: Span = Field(default=300, alias="verify")


class Retention(_Model):
    """How long the replaced version stays ready for an instant rollback."""

    keep_previous_s: Span = Field(default=14 * 86_400, alias="keep_previous")
    then: Literal["archive", "keep"] = "archive"


class DeploymentPolicy(_Model):
    """A whole rollout: a named endpoint over one model, its arms, strategy and rules."""

    name: Name
    model: Name
    strategy: Strategy
    arms: list[Arm] = Field(min_length=2, max_length=10)
    unit: Literal["routing_key", "request"] = "routing_key"
    steps: list[Step] | None = Field(default=None, min_length=2, max_length=20)
    min_samples_per_step: Samples = 200
    min_dwell_s: Span = Field(default=600, alias="min_dwell")
    max_step_duration_s: Span | None = Field(default=None, alias="max_step_duration")
    min_duration_s: Span | None = Field(default=None, alias="min_duration")
    shadow: ShadowPhase | None = None
    blue_green: BlueGreen | None = None
    guardrails: Guardrails = Field(default_factory=Guardrails)
    analysis: Analysis = Field(default_factory=Analysis)
    retention: Retention = Field(default_factory=Retention)
    auto_promote: bool = True
    review_at: list[Percent] = Field(default_factory=list, max_length=20)  # R-DEP-02 holds
    hypothesis: Hypothesis | None = None  # R-DEP-17: pre-registered, frozen once served
    stateful: Annotated[Stateful | None, BeforeValidator(as_stateful)] = None  # R-DEP-10
    timing: Timing | None = None  # R-TRN-21: no start, step or promotion at peak (deploy.timing)

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentPolicy:
        _check_strategy_fields(self)
        _check_roles(self)
        _name_arms(self.arms)
        _assign_weights(self)
        if (
            self.analysis.method == "fixed_horizon"
            and self.analysis.planned_samples_per_arm is None
        ):
            raise InvalidInput(
                "fixed_horizon needs planned_samples_per_arm (see keel.deploy.samplesize)",
                field="analysis.planned_samples_per_arm",
            )
        if self.hypothesis is not None:
            check_plan(self.hypothesis, self.analysis.alpha, self.analysis.power)
        return self

    def arm(self, role: Role) -> Arm:
        """The first arm with ``role``; KeyError when there is none."""
        for arm in self.arms:
            if arm.role == role:
                return arm
        raise KeyError(role)

    @property
    def shares(self) -> list[float]:
        """The canary's share (percent) at each step; empty for other strategies."""
        return [share_of(s) for s in self.steps or ()]

    def step_dwell_s(self, step: int) -> int:
        """Seconds canary step ``step`` lasts at least: its own ``min_dwell`` or the policy's."""
        own = own_dwell_s((self.steps or [])[step])
        return self.min_dwell_s if own is None else own

    def to_document(self) -> dict[str, Any]:
        """The policy as JSON-able keys (durations in seconds); parses back to an equal policy.

        Unset optional values and keys of other strategies are left out.
        """
        document = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for field, strategies in _ONLY_FOR.items():
            if self.strategy not in strategies:
                document.pop(DeploymentPolicy.model_fields[field].alias or field, None)
        return document


_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "steps": ("canary",),
    "min_samples_per_step": ("canary",),
    "min_dwell_s": ("canary",),
    "max_step_duration_s": ("canary",),
    "review_at": ("canary",),
    "min_duration_s": ("ab",),
    "shadow": ("shadow", "canary"),
    "blue_green": ("blue_green",),
}


def _check_strategy_fields(policy: DeploymentPolicy) -> None:
    for field in policy.model_fields_set & _ONLY_FOR.keys():
        if policy.strategy not in _ONLY_FOR[field]:
            key = DeploymentPolicy.model_fields[field].alias or field
            raise InvalidInput(
                f"{key} applies to strategy {' or '.join(_ONLY_FOR[field])}, not {policy.strategy}",
                field=key,
            )
    if policy.strategy == "canary":
        if policy.steps is None:
            policy.steps = list(DEFAULT_STEPS)
        check_steps(policy.steps, policy.review_at, policy.max_step_duration_s)
    if policy.strategy == "shadow" and policy.shadow is None:
        policy.shadow = ShadowPhase()
    if policy.strategy == "blue_green" and policy.blue_green is None:
        policy.blue_green = BlueGreen()
    if policy.min_duration_s is None:
        # R-DEP-14: an A/B test covers at least one weekly cycle unless told otherwise.
        policy.min_duration_s = _WEEK_S if policy.strategy == "ab" else 0


_NEEDS: dict[str, tuple[Role, int, int]] = {  # strategy -> (candidate role, min count, max count)
    "canary": ("canary", 1, 1),
    "ab": ("challenger", 1, 9),
    "shadow": ("shadow", 1, 9),
    "blue_green": ("challenger", 1, 1),
}


def _check_roles(policy: DeploymentPolicy) -> None:
    primaries = [i for i, arm in enumerate(policy.arms) if arm.role == "primary"]
    if not primaries:
        raise InvalidInput("one arm must have role primary", field="arms")
    if len(primaries) > 1:
        raise InvalidInput("only one arm may be primary", field=f"arms[{primaries[1]}].role")
    wanted, low, high = _NEEDS[policy.strategy]
    count = 0
    for i, arm in enumerate(policy.arms):
        if arm.role in ("primary", "shadow"):
            count += arm.role == wanted
            continue
        if arm.role != wanted:
            raise InvalidInput(
                f"a {policy.strategy} deployment has no {arm.role} arm", field=f"arms[{i}].role"
            )
        count += 1
    if not low <= count <= high:
        many = "exactly one" if low == high else "at least one"
        raise InvalidInput(
            f"a {policy.strategy} deployment needs {many} {wanted} arm", field="arms"
        )
    seen: dict[tuple[str, object], int] = {}
    for i, arm in enumerate(policy.arms):
        target = ("version", arm.version) if arm.version is not None else ("alias", arm.alias)
        if target in seen:
            raise InvalidInput(
                f"arms[{seen[target]}] already serves this {target[0]}",
                field=f"arms[{i}].{target[0]}",
            )
        seen[target] = i


def _name_arms(arms: list[Arm]) -> None:
    totals: dict[str, int] = {}
    for arm in arms:
        totals[arm.role] = totals.get(arm.role, 0) + 1
    counts: dict[str, int] = {}
    for arm in arms:
        counts[arm.role] = counts.get(arm.role, 0) + 1
        if arm.name is None:
            repeated = totals[arm.role] > 1
            arm.name = f"{arm.role}-{counts[arm.role]}" if repeated else arm.role
    names: dict[str, int] = {}
    for i, arm in enumerate(arms):
        if arm.name in names:
            raise InvalidInput(f"arm name {arm.name!r} is used twice", field=f"arms[{i}].name")
        names[str(arm.name)] = i


def _assign_weights(policy: DeploymentPolicy) -> None:
    arms = policy.arms
    for i, arm in enumerate(arms):
        if arm.role == "shadow" and arm.weight not in (None, 0):
            raise InvalidInput(
                "a shadow arm gets a copy of traffic, not a share: its weight must be 0",
                field=f"arms[{i}].weight",
            )
    live = [i for i, arm in enumerate(arms) if arm.role != "shadow"]
    derived: dict[int, float] = {i: 0.0 for i in range(len(arms))}
    if policy.strategy == "canary":
        first = policy.shares[0]
        derived.update({i: first if arms[i].role == "canary" else 100 - first for i in live})
    elif policy.strategy in ("shadow", "blue_green"):
        derived.update({i: 100.0 if arms[i].role == "primary" else 0.0 for i in live})
    else:  # ab: as given, or an equal split (the remainder to the primary)
        missing = [i for i in live if arms[i].weight is None]
        if missing and len(missing) < len(live):
            raise InvalidInput(
                "give every live arm a weight or none", field=f"arms[{missing[0]}].weight"
            )
        if missing:
            share = round(100 / len(live), 2)
            derived.update({i: share for i in live})
            primary = next(i for i in live if arms[i].role == "primary")
            derived[primary] = round(100 - share * (len(live) - 1), 2)
        else:
            derived.update({i: float(arms[i].weight or 0) for i in live})
            total = sum(derived[i] for i in live)
            if abs(total - 100) > 1e-9:
                raise InvalidInput(
                    f"live arm weights sum to {total:g}, not 100", field=f"arms[{live[-1]}].weight"
                )
    for i, arm in enumerate(arms):
        if arm.weight is not None and abs(arm.weight - derived[i]) > 1e-9:
            source = (
                "steps[0]" if policy.strategy == "canary" else f"the {policy.strategy} strategy"
            )
            raise InvalidInput(
                f"weight {arm.weight:g} contradicts {source} (which gives {derived[i]:g}); omit it",
                field=f"arms[{i}].weight",
            )
        arm.weight = derived[i]


def parse_policy(data: Mapping[str, Any]) -> DeploymentPolicy:
    """Validate a policy given as a mapping (the JSON body of ``POST /v1/deployments``)."""
    if not isinstance(data, Mapping):
        raise InvalidInput("policy: expected a mapping of keys to values", field="policy")
    try:
        return DeploymentPolicy.model_validate(dict(data))
    except ValidationError as exc:
        raise invalid_input(exc, whole="policy", hide=STEP_TAGS) from None


def load_policy(text: str) -> DeploymentPolicy:
    """Validate a policy written as YAML or JSON text (``keel deploy create -f``)."""
    return parse_policy(load_document(text, field="policy"))
