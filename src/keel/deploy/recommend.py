"""Shadow or canary first (R-DEP-05): weigh what a bad rollout would cost against shadow's
extra compute, and show the numbers behind the recommendation.

A shadow phase mirrors live traffic to the candidate, so no user sees its answers, but the
candidate's compute is paid on top of the primary's: 10-20 % more serving cost (seed 001).
A canary exposes real users from its first step. Shadow pays off when a bad rollout would
cost more than that overhead::

    bad_rollout_cost = error_rate x users x impact_per_error
    shadow_overhead  = overhead_share x requests x cost_per_prediction

keel does not measure a money cost per prediction (the prediction log holds latency, not
prices), so ``cost_per_prediction`` is given by the caller. Pure function: no I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from keel.errors import InvalidInput

__all__ = ["OVERHEAD_RANGE", "Recommendation", "recommend_strategy"]

#: Shadow's extra compute as a share of the primary's serving cost (seed 001: 10-20 %).
OVERHEAD_RANGE = (0.10, 0.20)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The recommended first phase and every number behind it.

    ``canary_exposure_cost`` is what the same bad rollout would cost while only the first
    canary step's share of users sees it (for context: a canary limits, not removes, harm).
    ``break_even_error_rate`` is the error rate at which both choices cost the same.
    """

    strategy: Literal["shadow", "canary"]
    bad_rollout_cost: float
    shadow_overhead: float
    overhead_share: float
    canary_exposure_cost: float
    break_even_error_rate: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return asdict(self)


def _check(value: float, field: str, *, low: float = 0.0, high: float | None = None) -> float:
    number = float(value)
    if not number >= low or (high is not None and number > high):
        bound = f"[{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        raise InvalidInput(f"{field}: expected a number {bound}, got {value!r}", field=field)
    return number


def recommend_strategy(
    *,
    error_rate: float,
    users: float,
    impact_per_error: float,
    requests: float,
    cost_per_prediction: float,
    overhead_share: float = 0.15,
    first_canary_share: float = 5.0,
) -> Recommendation:
    """Recommend ``shadow`` when the bad-rollout cost exceeds shadow's overhead, else ``canary``.

    ``error_rate``: share of users a bad model would harm (0-1); ``users`` reached over the
    rollout; ``impact_per_error``: the cost of one harmed user; ``requests`` served over the
    shadow period and ``cost_per_prediction`` (same currency) price the overhead;
    ``overhead_share`` must lie in the documented 10-20 % unless measured otherwise (0-1);
    ``first_canary_share`` in percent. InvalidInput names a negative or out-of-range field.

    >>> recommend_strategy(error_rate=0.02, users=10_000, impact_per_error=5.0,
    ...                    requests=1_000_000, cost_per_prediction=0.0001).strategy
    'shadow'
    """
    rate = _check(error_rate, "error_rate", high=1.0)
    reached = _check(users, "users")
    impact = _check(impact_per_error, "impact_per_error")
    served = _check(requests, "requests")
    price = _check(cost_per_prediction, "cost_per_prediction")
    share = _check(overhead_share, "overhead_share", high=1.0)
    first = _check(first_canary_share, "first_canary_share", high=100.0)
    bad = rate * reached * impact
    overhead = share * served * price
    per_error = reached * impact
    break_even = overhead / per_error if per_error > 0 else None
    if bad > overhead:
        strategy: Literal["shadow", "canary"] = "shadow"
        reason = (
            f"a bad rollout would cost {bad:,.2f} (error rate {rate:g} x {reached:,.0f} users x "
            f"{impact:g}), more than shadow's overhead {overhead:,.2f} ({share:.0%} of "
            f"{served:,.0f} requests x {price:g}): run a shadow phase first"
        )
    else:
        strategy = "canary"
        reason = (
            f"a bad rollout would cost {bad:,.2f}, not more than shadow's overhead "
            f"{overhead:,.2f}: start with a canary (first step {first:g}% exposes "
            f"{bad * first / 100:,.2f})"
        )
    return Recommendation(strategy, bad, overhead, share, bad * first / 100, break_even, reason)
