"""The "rotting asset" simulation: scheduled vs triggered retraining of a decaying model (R-TRN-19).

Seed 001's figure: accuracy ``A0·e^(−λ·age)`` on each whole day, where ``age``
counts days since the last retraining. Scheduled retraining resets the age
every ``retrain_interval_days``; triggered retraining resets it on the day the
accuracy would fall below the threshold. A reset takes effect the same day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from keel.errors import InvalidInput

__all__ = ["RottingAsset", "Strategy", "simulate_rotting_asset"]


@dataclass(frozen=True, slots=True)
class Strategy:
    """One strategy's accuracy per day and what it cost in retrainings."""

    name: str
    accuracy: NDArray[np.float64]
    retrain_days: tuple[int, ...]
    mean_accuracy: float
    min_accuracy: float
    days_below_threshold: int

    @property
    def retrainings(self) -> int:
        """How many times the model was retrained over the horizon."""
        return len(self.retrain_days)


@dataclass(frozen=True, slots=True)
class RottingAsset:
    """Both strategies over the same horizon, with the inputs and assumptions."""

    days: NDArray[np.int64]
    scheduled: Strategy
    triggered: Strategy
    baseline: float
    decay_per_day: float
    threshold: float
    retrain_interval_days: int
    assumptions: tuple[str, ...]


def _strategy(
    name: str, days: NDArray[np.int64], resets: list[int], baseline: float, lam: float, floor: float
) -> Strategy:
    last = np.zeros(days.size, dtype=np.int64)
    for day in resets:
        last[day:] = day
    accuracy = baseline * np.exp(-lam * (days - last))
    return Strategy(
        name=name,
        accuracy=accuracy,
        retrain_days=tuple(resets),
        mean_accuracy=float(accuracy.mean()),
        min_accuracy=float(accuracy.min()),
        days_below_threshold=int(np.count_nonzero(accuracy < floor)),
    )


def simulate_rotting_asset(
    baseline: float = 0.90,
    decay_per_day: float = 0.0003,
    threshold: float = 0.82,
    horizon_days: int = 365,
    retrain_interval_days: int = 90,
) -> RottingAsset:
    """Simulate scheduled and triggered retraining; the defaults are seed 001's figure.

    Examples
    --------
    >>> sim = simulate_rotting_asset()
    >>> sim.scheduled.retrain_days, sim.triggered.retrain_days
    ((90, 180, 270, 360), (311,))
    """
    for field, value in (("baseline", baseline), ("decay_per_day", decay_per_day)):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{field} must be a finite number > 0", field=field, value=value)
    if baseline > 1:
        raise InvalidInput("baseline must be in (0, 1]", field="baseline", value=baseline)
    if not (0 < threshold < baseline):
        raise InvalidInput("threshold must be in (0, baseline)", field="threshold", value=threshold)
    for field, count in (
        ("horizon_days", horizon_days),
        ("retrain_interval_days", retrain_interval_days),
    ):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidInput(f"{field} must be a whole number ≥ 1", field=field, value=count)

    days = np.arange(horizon_days, dtype=np.int64)
    scheduled = list(range(retrain_interval_days, horizon_days, retrain_interval_days))
    # The age at which A0·e^(−λ·age) first drops below the threshold; a retraining
    # then resets the age to 0 that same day, so triggers are evenly spaced.
    # The fix-up loops only move it across a rounding edge of the closed form.
    age = max(1, math.floor(math.log(baseline / threshold) / decay_per_day) + 1)
    while age > 1 and baseline * math.exp(-decay_per_day * (age - 1)) < threshold:
        age -= 1
    while baseline * math.exp(-decay_per_day * age) >= threshold:
        age += 1
    triggered = list(range(age, horizon_days, age))
    return RottingAsset(
        days=days,
        scheduled=_strategy("scheduled", days, scheduled, baseline, decay_per_day, threshold),
        triggered=_strategy("triggered", days, triggered, baseline, decay_per_day, threshold),
        baseline=baseline,
        decay_per_day=decay_per_day,
        threshold=threshold,
        retrain_interval_days=retrain_interval_days,
        assumptions=(
            "Accuracy decays exponentially at a constant, known rate and is observed every day "
            "without error (a real trigger sees it through delayed, noisy labels).",
            "A retraining restores the baseline the same day and costs the same every time.",
        ),
    )
