"""Retraining economics: staleness cost, the optimal retraining interval T*, its sensitivity.

The model is seed 001's (R-TRN-11 … R-TRN-18): accuracy decays as
``A(t) = A0·e^(−λt)`` after each retraining, staleness costs
``S(T) = ∫0^T Q·V·(A0 − A(t)) dt = Q·V·A0·(T − (1 − e^(−λT))/λ)`` over an interval
``T``, each retraining costs ``C``, and the interval minimising the cost per day
``(C + S(T))/T`` is ``T*``. Units: days for time, accuracy as a fraction (0.95),
``V`` in money per query per unit of that fraction, exactly as the seed computes it.

Pure functions: numbers in, frozen dataclasses out; bad input raises
:class:`keel.errors.InvalidInput` naming the field.
"""

from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, replace

from scipy.optimize import brentq

from keel.errors import InvalidInput

__all__ = [
    "ASSUMPTIONS",
    "EconomicsInputs",
    "IntervalReport",
    "RetrainDecision",
    "Sensitivity",
    "daily_cost",
    "half_life_days",
    "interval_report",
    "optimal_interval_days",
    "retrain_decision",
    "retraining_cost",
    "sensitivity",
    "sqrt_law_interval_days",
    "staleness_cost",
]

#: The seed's "Model Limitations" (R-TRN-18), shown with every result.
ASSUMPTIONS: tuple[str, ...] = (
    "Gradual, predictable drift: accuracy decays as A(t) = A0·e^(−λt) at a known, constant "
    "rate λ. Sudden concept drift breaks this model and needs trigger-based detection instead.",
    "Known, linear value: every accuracy point is worth the same V per query, and query "
    "volume Q is constant.",
    "Independent retraining cycles: each retraining restores A0 and nothing carries over "
    "between cycles.",
    "Fixed retraining cost: C (compute + validation + deployment + expected regression "
    "cost) is the same every time, and retraining takes no time.",
    "Units: time in days; accuracy as a fraction (0.95); V is money per query per unit of "
    "that fraction, as seed 001 computes it (if V is per percentage point, multiply by 100).",
)

# Below this λT the closed forms lose digits to cancellation (x − (1 − e^−x) ≈ x²/2);
# their Taylor series are exact to ~1e-14 relative there.
_SERIES_BELOW = 1e-3


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive(field: str, value: float) -> float:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"{field} must be a finite number > 0", field=field, value=value)
    return float(value)


def _check_non_negative(field: str, value: float) -> float:
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{field} must be a finite number ≥ 0", field=field, value=value)
    return float(value)


@dataclass(frozen=True, slots=True)
class EconomicsInputs:
    """The five numbers of the staleness model; validated on construction.

    ``retrain_cost`` is C per retraining, ``queries_per_day`` is Q,
    ``value_per_point`` is V (per query, per unit of accuracy fraction), ``a0`` is
    the accuracy right after retraining, in (0, 1], ``decay_per_day`` is λ.
    """

    retrain_cost: float
    queries_per_day: float
    value_per_point: float
    a0: float
    decay_per_day: float

    def __post_init__(self) -> None:
        for field in ("retrain_cost", "queries_per_day", "value_per_point", "decay_per_day"):
            object.__setattr__(self, field, _check_positive(field, getattr(self, field)))
        a0 = _check_positive("a0", self.a0)
        if a0 > 1:
            raise InvalidInput(
                "a0 must be in (0, 1] (accuracy as a fraction)", field="a0", value=a0
            )
        object.__setattr__(self, "a0", a0)

    @property
    def loss_rate(self) -> float:
        """``Q·V·A0``: money per day lost if accuracy fell all the way to 0."""
        return self.queries_per_day * self.value_per_point * self.a0


def _excess(x: float) -> float:
    """``x − (1 − e^−x)``, accurate for small x."""
    if x < _SERIES_BELOW:
        return x * x * (1 / 2 - x * (1 / 6 - x * (1 / 24 - x / 120)))
    return x + math.expm1(-x)


def _marginal(x: float) -> float:
    """``1 − (1 + x)·e^−x``, accurate for small x; increases from 0 to 1 on x > 0."""
    if x < _SERIES_BELOW:
        return x * x * (1 / 2 - x * (1 / 3 - x * (1 / 8 - x / 30)))
    return -math.expm1(-x) - x * math.exp(-x)


def half_life_days(decay_per_day: float) -> float:
    """``t½ = ln 2 / λ``: days until accuracy falls to half of A0."""
    return math.log(2) / _check_positive("decay_per_day", decay_per_day)


def staleness_cost(inputs: EconomicsInputs, interval_days: float) -> float:
    """``S(T) = Q·V·A0·(T − (1 − e^(−λT))/λ)``: money lost to decay over one interval."""
    t = _check_non_negative("interval_days", interval_days)
    lam = inputs.decay_per_day
    return inputs.loss_rate * _excess(lam * t) / lam


def daily_cost(inputs: EconomicsInputs, interval_days: float) -> float:
    """``(C + S(T)) / T``: retraining plus staleness cost per day when retraining every T."""
    t = _check_positive("interval_days", interval_days)
    return (inputs.retrain_cost + staleness_cost(inputs, t)) / t


def sqrt_law_interval_days(inputs: EconomicsInputs) -> float:
    """The square-root law ``T* ≈ sqrt(2C / (Q·V·A0·λ))`` (small λT*)."""
    return math.sqrt(2 * inputs.retrain_cost / (inputs.loss_rate * inputs.decay_per_day))


def optimal_interval_days(inputs: EconomicsInputs) -> float | None:
    """The exact ``T* = argmin_T (C + S(T))/T``, or None when no finite T beats never retraining.

    Setting the derivative to zero gives ``1 − (1 + λT)·e^(−λT) = C·λ / (Q·V·A0)``;
    the left side rises from 0 to 1, so there is one root when the right side is
    below 1, found by Brent's method (scipy's ``lambertw`` near its branch point
    loses most digits at the small λT* real models have). When ``C·λ ≥ Q·V·A0``
    the cost per day falls forever towards ``Q·V·A0``: no interval pays for itself.

    Examples
    --------
    >>> fraud = EconomicsInputs(5_000, 1_000_000, 0.50, 0.95, 0.02)  # seed 001
    >>> round(optimal_interval_days(fraud), 3), round(sqrt_law_interval_days(fraud), 3)
    (1.033, 1.026)
    """
    k = inputs.retrain_cost * inputs.decay_per_day / inputs.loss_rate
    if k >= 1:
        return None
    hi = max(1.0, 4 * math.sqrt(2 * k))
    while _marginal(hi) <= k:
        hi *= 2
    x = brentq(lambda x: _marginal(x) - k, 0.0, hi, xtol=1e-300, rtol=4 * sys.float_info.epsilon)
    return float(x) / inputs.decay_per_day


def retraining_cost(
    compute: float, validation: float = 0.0, deployment: float = 0.0, risk: float = 0.0
) -> float:
    """``C = C_compute + C_validation + C_deployment + C_risk`` (R-TRN-14).

    ``risk`` is the expected cost of a regression (probability × cost); the total must be > 0.
    """
    parts = {"compute": compute, "validation": validation, "deployment": deployment, "risk": risk}
    total = sum(_check_non_negative(name, value) for name, value in parts.items())
    if total <= 0:
        raise InvalidInput("the retraining cost must be > 0", field="compute", value=compute)
    return total


@dataclass(frozen=True, slots=True)
class RetrainDecision:
    """R-TRN-11: retrain when the gain is worth more than training cost plus deployment risk."""

    benefit: float
    cost: float
    should_retrain: bool
    assumptions: tuple[str, ...]


def retrain_decision(
    delta_accuracy: float, value_per_point: float, training_cost: float, deployment_risk: float
) -> RetrainDecision:
    """Retrain if ``ΔAccuracy × ValuePerPoint > TrainingCost + DeploymentRisk`` (R-TRN-11).

    ``delta_accuracy`` is the expected gain as a fraction (0.03); ``value_per_point``
    is what one unit of that fraction is worth over the horizon the decision covers
    (e.g. Q·V·days until the next chance to retrain).
    """
    gain = _check_positive("delta_accuracy", delta_accuracy)
    benefit = gain * _check_positive("value_per_point", value_per_point)
    cost = _check_non_negative("training_cost", training_cost) + _check_non_negative(
        "deployment_risk", deployment_risk
    )
    return RetrainDecision(
        benefit=benefit,
        cost=cost,
        should_retrain=benefit > cost,
        assumptions=(
            "The accuracy gain is realised in full over the horizon value_per_point covers.",
            "Deployment risk is an expected cost: probability of a regression × its cost.",
        ),
    )


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """T* when one input moves down and up by the same percentage, others fixed.

    ``elasticity`` is ``d ln T* / d ln input`` over that range: the square-root law
    gives +0.5 for the retraining cost and −0.5 for the others (R-TRN-16).
    """

    parameter: str
    value: float
    value_low: float
    value_high: float
    t_star_low_days: float | None
    t_star_high_days: float | None
    elasticity: float | None


_PARAMETERS = ("retrain_cost", "queries_per_day", "value_per_point", "a0", "decay_per_day")


def sensitivity(inputs: EconomicsInputs, change_pct: float = 20.0) -> list[Sensitivity]:
    """T* for each input moved by ±``change_pct`` percent (A0 is capped at 1)."""
    pct = _check_positive("change_pct", change_pct)
    if pct >= 100:
        raise InvalidInput("change_pct must be below 100", field="change_pct", value=change_pct)
    rows = []
    for name in _PARAMETERS:
        value = getattr(inputs, name)
        low, high = value * (1 - pct / 100), value * (1 + pct / 100)
        if name == "a0":
            high = min(high, 1.0)  # accuracy cannot exceed 1
        t_low = optimal_interval_days(replace(inputs, **{name: low}))
        t_high = optimal_interval_days(replace(inputs, **{name: high}))
        elasticity = None
        if t_low is not None and t_high is not None and high > low:
            elasticity = math.log(t_high / t_low) / math.log(high / low)
        rows.append(Sensitivity(name, value, low, high, t_low, t_high, elasticity))
    return rows


@dataclass(frozen=True, slots=True)
class IntervalReport:
    """Everything R-TRN-12 … R-TRN-18 say to show about one model's retraining interval."""

    inputs: EconomicsInputs
    t_star_days: float | None
    t_star_sqrt_law_days: float
    half_life_days: float
    daily_cost_at_t_star: float | None
    staleness_cost_at_t_star: float | None
    manual_deploy_days: float | None
    automate: bool | None
    sensitivity: list[Sensitivity]
    assumptions: tuple[str, ...]


def interval_report(
    inputs: EconomicsInputs,
    *,
    manual_deploy_days: float | None = None,
    change_pct: float = 20.0,
) -> IntervalReport:
    """T* (exact and square-root law), half-life, costs at T*, sensitivity, automate flag.

    ``automate`` is True when T* is shorter than ``manual_deploy_days``, the
    team's time to retrain and deploy by hand (R-TRN-17: permanent technical
    debt), None when that time is not given.
    """
    manual = None
    if manual_deploy_days is not None:
        manual = _check_positive("manual_deploy_days", manual_deploy_days)
    t_star = optimal_interval_days(inputs)
    sqrt_law = sqrt_law_interval_days(inputs)
    notes = list(ASSUMPTIONS)
    if t_star is None:
        notes.append(
            "No finite optimum: C·λ ≥ Q·V·A0, so the staleness saved never pays for a "
            "retraining; retrain on triggers (or not at all), not on a schedule."
        )
    elif t_star * inputs.decay_per_day > 0.2:
        gap = 100 * (t_star - sqrt_law) / t_star
        notes.append(
            f"λ·T* = {t_star * inputs.decay_per_day:.2f} is not small, so the square-root "
            f"law is off by {gap:.0f}%; use the exact T*."
        )
    automate = None
    if manual is not None:
        automate = t_star is not None and t_star < manual
        if automate:
            notes.append(
                f"T* ({t_star:.2f} d) is shorter than the manual deploy time ({manual:g} d): "
                "permanent technical debt unless retraining is automated."
            )
    return IntervalReport(
        inputs=inputs,
        t_star_days=t_star,
        t_star_sqrt_law_days=sqrt_law,
        half_life_days=half_life_days(inputs.decay_per_day),
        daily_cost_at_t_star=None if t_star is None else daily_cost(inputs, t_star),
        staleness_cost_at_t_star=None if t_star is None else staleness_cost(inputs, t_star),
        manual_deploy_days=manual,
        automate=automate,
        sensitivity=sensitivity(inputs, change_pct),
        assumptions=tuple(notes),
    )
