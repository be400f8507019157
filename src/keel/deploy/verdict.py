"""From arm statistics and guardrails to a verdict: ship, keep collecting, roll back or investigate.

The matrix (R-DEP-16, with R-DEP-03 and R-DEP-08) as :func:`decide` applies it,
first match wins:

1. a safety guardrail (error rate, p99 latency) breached for its ``for``
   duration → ``roll_back`` — even when the metric improved: R-DEP-08 rolls
   back without human approval, it is not a trade-off;
2. the metric significantly worse (CI entirely below 0) → ``roll_back`` (R-DEP-03 "any regression");
3. a secondary metric significantly regressed: with a significant improvement
   of the main metric → ``investigate`` (the trade-off row), else ``roll_back``;
4. the improvement significantly at least ``min_improvement`` (CI entirely
   above it) → ``ship``;
5. the improvement significantly below ``min_improvement`` (CI entirely below
   it), or still undecided when the horizon is used up → ``roll_back``
   (R-DEP-03 "improvement < 2 %", R-DEP-16 "no significant change: keep current");
6. otherwise → ``keep_collecting``; with no metric configured, guardrails
   passing and enough samples → ``ship``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from keel.deploy.policy import Analysis, Guardrails, MetricGuard, SecondaryMetric
from keel.deploy.sequential import (
    Interval,
    SequentialState,
    fixed_horizon,
    msprt,
    msprt_update,
)

__all__ = [
    "ArmStats",
    "GuardrailCheck",
    "MetricCheck",
    "MetricEstimate",
    "Verdict",
    "check_metric",
    "check_safety",
    "decide",
]


class Verdict(StrEnum):
    """What the statistics say (R-DEP-16)."""

    SHIP = "ship"
    KEEP_COLLECTING = "keep_collecting"
    ROLL_BACK = "roll_back"
    INVESTIGATE = "investigate"


@dataclass(frozen=True, slots=True)
class MetricEstimate:
    """A metric of one arm with its standard error (e.g. AUC with Hanley-McNeil SE)."""

    value: float
    std_error: float
    n: int


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One arm's numbers at an evaluation.

    ``n``/``errors``/``p99_latency_ms`` cover the guardrail window; ``n_in_step``
    counts requests since the current step (or phase) began; ``metric`` and
    ``secondary`` are cumulative since the rollout started (the sequential test
    needs every observation); ``agreement`` is a shadow arm's share of answers
    equal to the primary's. R-DEP-15: ``burn_in_excluded`` rows served inside a burn-in
    cut and ``pending`` rows younger than the attribution window are left out of the
    metric (``n_judged`` rows since the rollout started are left in, the rows per-segment
    numbers split); ``late_labels`` arrived after the window and were not counted. ``cuped``:
    the CUPED summary when ``metric`` was adjusted by a covariate (R-DEP-14).
    """

    name: str
    n: int
    errors: int = 0
    p99_latency_ms: float | None = None
    n_in_step: int = 0
    metric: MetricEstimate | None = None
    secondary: Mapping[str, MetricEstimate] = field(default_factory=dict)
    agreement: float | None = None
    burn_in_excluded: int = 0
    pending: int = 0
    late_labels: int = 0
    cuped: Mapping[str, Any] = field(default_factory=dict)  # R-DEP-14 summary (livecuped)
    n_judged: int = 0

    def numbers(self) -> dict[str, Any]:
        """The arm's numbers as JSON (decision records, reports, holdout lift)."""
        metric = self.metric
        return {
            "n": self.n,
            "errors": self.errors,
            "error_rate": self.errors / self.n if self.n else None,
            "p99_latency_ms": self.p99_latency_ms,
            "metric": None
            if metric is None
            else {"value": metric.value, "std_error": metric.std_error, "n": metric.n},
        }


@dataclass(frozen=True, slots=True)
class GuardrailCheck:
    """One safety rule at this evaluation; ``breached`` once it held for its duration."""

    name: str
    observed: float | None  # None: too few samples to judge yet
    threshold: float
    breached_now: bool
    since_ms: int | None
    breached: bool
    reason: str


@dataclass(frozen=True, slots=True)
class MetricCheck:
    """A metric comparison; a positive ``difference`` means the candidate is better."""

    name: str
    primary: float
    candidate: float
    difference: float
    threshold: float  # absolute: the minimum improvement, or minus the allowed decrease
    low: float
    high: float
    pvalue: float
    method: str
    ready: bool

    @property
    def above_threshold(self) -> bool:
        """Significantly better than the threshold (the CI lies above it)."""
        return self.ready and self.low > self.threshold

    @property
    def below_threshold(self) -> bool:
        """Significantly worse than the threshold (the CI lies below it)."""
        return self.ready and self.high < self.threshold

    @property
    def regression(self) -> bool:
        """Significantly worse than the primary at all."""
        return self.ready and self.high < 0


def _sustained(
    name: str, observed: float | None, threshold: float, for_s: int, since: int | None, now_ms: int
) -> GuardrailCheck:
    now_breached = observed is not None and observed > threshold
    since = (since if since is not None else now_ms) if now_breached else None
    held = since is not None and now_ms - since >= for_s * 1000
    if observed is None:
        reason = f"{name}: waiting for samples"
    elif held and since is not None:  # since may be 0: compare with None, never truthiness
        reason = f"{name} {observed:.4g} > {threshold:g} for {(now_ms - since) // 1000}s"
    elif now_breached:
        reason = f"{name} {observed:.4g} > {threshold:g}, not yet for {for_s}s"
    else:
        reason = f"{name} {observed:.4g} <= {threshold:g}"
    return GuardrailCheck(name, observed, threshold, now_breached, since, held, reason)


def check_safety(
    guardrails: Guardrails,
    primary: ArmStats,
    candidate: ArmStats,
    *,
    since_ms: Mapping[str, int],
    now_ms: int,
) -> list[GuardrailCheck]:
    """Error-rate increase and p99 ratio of ``candidate`` against ``primary``.

    ``since_ms`` holds when each guardrail was first seen breached (the
    caller's state); a guardrail with fewer than ``min_samples`` on either arm
    is not judged.
    """
    err = guardrails.error_rate
    increase = None
    if min(primary.n, candidate.n) >= err.min_samples:
        increase = candidate.errors / candidate.n - primary.errors / primary.n
    lat = guardrails.p99_latency
    ratio = None
    if (
        min(primary.n, candidate.n) >= lat.min_samples
        and primary.p99_latency_ms
        and candidate.p99_latency_ms is not None
    ):
        ratio = candidate.p99_latency_ms / primary.p99_latency_ms
    return [
        _sustained(
            "error_rate", increase, err.max_increase, err.for_s, since_ms.get("error_rate"), now_ms
        ),
        _sustained(
            "p99_latency", ratio, lat.max_ratio, lat.for_s, since_ms.get("p99_latency"), now_ms
        ),
    ]


def check_metric(
    rule: MetricGuard | SecondaryMetric,
    primary: MetricEstimate,
    candidate: MetricEstimate,
    analysis: Analysis,
    state: SequentialState | None = None,
) -> tuple[MetricCheck, SequentialState | None]:
    """Compare one metric under the policy's analysis (mSPRT or fixed horizon).

    For :class:`MetricGuard` the threshold is ``+min_improvement``, for
    :class:`SecondaryMetric` ``-max_decrease`` (relative ones scale by the
    primary's value). A sequential ``state`` is folded in and returned updated.
    """
    sign = 1.0 if rule.higher_is_better else -1.0
    diff = sign * (candidate.value - primary.value)
    scale = abs(primary.value) if rule.relative else 1.0
    if isinstance(rule, MetricGuard):
        threshold = rule.min_improvement * scale
    else:
        threshold = -rule.max_decrease * scale
    # Both arms exact (SE 0) and equal is "no difference", not a division by zero.
    variance = max(primary.std_error**2 + candidate.std_error**2, 1e-24)
    look: Interval
    if analysis.method == "fixed_horizon":
        look = fixed_horizon(
            diff,
            variance,
            n_per_arm=(primary.n, candidate.n),
            planned_per_arm=analysis.planned_samples_per_arm or 1,
            alpha=analysis.alpha,
        )
    else:
        tau = analysis.tau or abs(threshold) or 0.1 * abs(primary.value) or 1.0
        look = msprt(diff, variance, tau=tau, alpha=analysis.alpha)
        if state is not None:
            state, look = msprt_update(state, look)
    check = MetricCheck(
        rule.name,
        primary.value,
        candidate.value,
        diff,
        threshold,
        look.low,
        look.high,
        look.pvalue,
        look.method,
        look.ready,
    )
    return check, state


def decide(
    safety: list[GuardrailCheck],
    metric: MetricCheck | None,
    secondary: list[MetricCheck],
    *,
    enough_samples: bool,
    exhausted: bool = False,
) -> tuple[Verdict, list[str]]:
    """Apply the matrix in the module docstring; returns the verdict and its reasons.

    ``enough_samples``: the phase's minimum samples are in (only matters when
    no metric is configured); ``exhausted``: the time or sample budget is used
    up, so an undecided metric means "no significant improvement".
    """
    breached = [g for g in safety if g.breached]
    if breached:
        return Verdict.ROLL_BACK, [f"guardrail breached: {g.reason}" for g in breached]
    if metric is not None and metric.regression:
        return Verdict.ROLL_BACK, [f"regression: {_describe(metric)}"]
    failed = [m for m in secondary if m.below_threshold]
    improved = metric is not None and metric.above_threshold
    if failed:
        reasons = [f"secondary metric regressed: {_describe(m)}" for m in failed]
        if improved:
            assert metric is not None
            return Verdict.INVESTIGATE, [f"significant improvement: {_describe(metric)}", *reasons]
        return Verdict.ROLL_BACK, reasons
    if metric is None:
        if enough_samples:
            return Verdict.SHIP, ["guardrails pass; no metric configured"]
        return Verdict.KEEP_COLLECTING, ["guardrails pass; waiting for the minimum samples"]
    if improved:
        return Verdict.SHIP, [f"significant improvement: {_describe(metric)}"]
    if metric.below_threshold:
        return Verdict.ROLL_BACK, [f"improvement below the minimum: {_describe(metric)}"]
    if exhausted or (metric.method == "fixed_horizon" and metric.ready):
        return Verdict.ROLL_BACK, [
            f"no significant improvement at the horizon: {_describe(metric)}"
        ]
    return Verdict.KEEP_COLLECTING, [f"undecided: {_describe(metric)}"]


def _describe(m: MetricCheck) -> str:
    if not m.ready:
        return f"{m.name} {m.candidate:.4g} vs {m.primary:.4g}; fixed horizon not reached"
    low = "-inf" if math.isinf(m.low) else f"{m.low:+.4g}"
    return (
        f"{m.name} {m.candidate:.4g} vs {m.primary:.4g}, difference {m.difference:+.4g} "
        f"[{low}, {m.high:+.4g}] vs threshold {m.threshold:+.4g} ({m.method}, p={m.pvalue:.3g})"
    )
