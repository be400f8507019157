"""Peeking guards: an always-valid mSPRT and a fixed-horizon gate.

A controller that looks at an experiment on every tick and stops at the first
p < α inflates its type-I error (about 0.3 for 100 looks at α = 0.05). Two
ways out, both here:

* :func:`msprt` — the mixture sequential probability ratio test of Johari,
  Koomen, Pekelis & Walsh, "Always valid inference" (2017/2022), with a normal
  mixing distribution N(θ₀, τ²) over the effect. For an estimate
  ``Δ̂ ~ N(θ, s²)`` of the difference (s² = var_c/n_c + var_t/n_t)

      Λ = sqrt(s² / (s² + τ²)) · exp(τ² (Δ̂ - θ₀)² / (2 s² (s² + τ²)))

  is a nonnegative martingale under θ = θ₀, so by Ville's inequality
  ``P(sup_n Λ_n ≥ 1/α) ≤ α``: ``p = min(1, 1/Λ)`` may be read at every look,
  and the running minimum of it is an always-valid p-value. Inverting Λ < 1/α
  over θ₀ gives the confidence sequence ``Δ̂ ± w`` with
  ``w² = s²(s²+τ²)/τ² · (ln((s²+τ²)/s²) - 2 ln α)``; its running intersection
  is always valid too. The controller uses this one (docs/deployments.md).
* :func:`fixed_horizon` — a classical CI, released only once every arm has the
  planned sample size; before that it answers "not yet".

Both are pure: the running minimum / intersection lives in
:class:`SequentialState`, which the caller stores between looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scipy import stats as sps

from keel.errors import InvalidInput

__all__ = ["Interval", "SequentialState", "fixed_horizon", "msprt", "msprt_update"]


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence interval (or sequence) for the difference and its p-value vs θ₀."""

    method: str  # "msprt" or "fixed_horizon"
    estimate: float
    low: float
    high: float
    pvalue: float
    ready: bool = True  # False: fixed horizon not reached, low/high are (-inf, inf)


@dataclass(frozen=True, slots=True)
class SequentialState:
    """What an always-valid test carries between looks: running min p, intersected CS."""

    looks: int = 0
    pvalue: float = 1.0
    low: float = -math.inf
    high: float = math.inf


def _check(estimate: float, variance: float, alpha: float) -> None:
    if not 0 < alpha < 1:
        raise InvalidInput("alpha must be in (0, 1)", field="alpha", value=alpha)
    if not math.isfinite(estimate):
        raise InvalidInput("estimate must be finite", field="estimate", value=estimate)
    if not (variance > 0 and math.isfinite(variance)):
        raise InvalidInput("variance must be positive and finite", field="variance")


def msprt(
    estimate: float, variance: float, *, tau: float, alpha: float = 0.05, theta0: float = 0.0
) -> Interval:
    """One look of the normal-mixture SPRT for ``H0: Δ = theta0``.

    ``estimate`` is Δ̂ (treatment − control) and ``variance`` its sampling
    variance s²; ``tau`` the mixing s.d., best set near the effect one hopes to
    detect (the policy's minimum improvement). The returned p-value and
    interval are valid at this look alone; combine looks with
    :func:`msprt_update` for the always-valid versions.

    >>> r = msprt(0.0, 1e-4, tau=0.02)
    >>> r.pvalue
    1.0
    """
    _check(estimate, variance, alpha)
    if not tau > 0:
        raise InvalidInput("tau must be positive", field="tau", value=tau)
    tau2 = tau * tau
    total = variance + tau2
    # log Λ, kept in logs: exp() overflows long before the p-value stops mattering.
    log_lr = 0.5 * math.log(variance / total) + tau2 * (estimate - theta0) ** 2 / (
        2 * variance * total
    )
    pvalue = min(1.0, math.exp(-log_lr)) if log_lr > -700 else 1.0
    half = math.sqrt(variance * total / tau2 * (math.log(total / variance) - 2 * math.log(alpha)))
    return Interval("msprt", estimate, estimate - half, estimate + half, pvalue)


def msprt_update(state: SequentialState, look: Interval) -> tuple[SequentialState, Interval]:
    """Fold one :func:`msprt` look into the running state; returns the always-valid view."""
    if look.method != "msprt":
        raise InvalidInput("only msprt looks accumulate", field="method", value=look.method)
    low, high = max(state.low, look.low), min(state.high, look.high)
    if low > high:
        # The sequence emptied: the effect drifted (non-stationary data) — the
        # assumptions broke, so fall back to this look's interval rather than
        # report an empty one.
        low, high = look.low, look.high
    new = replace(
        state, looks=state.looks + 1, pvalue=min(state.pvalue, look.pvalue), low=low, high=high
    )
    return new, replace(look, low=low, high=high, pvalue=new.pvalue)


def fixed_horizon(
    estimate: float,
    variance: float,
    *,
    n_per_arm: tuple[int, int],
    planned_per_arm: int,
    alpha: float = 0.05,
    theta0: float = 0.0,
) -> Interval:
    """A two-sided z interval for Δ, released only when both arms reached ``planned_per_arm``.

    Before that ``ready`` is False, the interval is (-inf, inf) and the p-value
    1: nothing may be decided on it (R-DEP-14: no peeking).
    """
    _check(estimate, variance, alpha)
    if planned_per_arm < 1:
        raise InvalidInput("planned_per_arm must be >= 1", field="planned_per_arm")
    if min(n_per_arm) < planned_per_arm:
        return Interval("fixed_horizon", estimate, -math.inf, math.inf, 1.0, ready=False)
    se = math.sqrt(variance)
    half = float(sps.norm.isf(alpha / 2)) * se
    pvalue = float(2 * sps.norm.sf(abs(estimate - theta0) / se))
    return Interval("fixed_horizon", estimate, estimate - half, estimate + half, pvalue)
