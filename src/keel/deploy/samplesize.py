"""Sample size per arm for two proportions or two means (R-DEP-12), α/power two-sided.

The minimum detectable effect is always named ``absolute`` or ``relative``:
the textbook's "2 % lift at 5 % baseline" is 1,864 per arm as two points and
745,600 as 2 % of 5 %. ``textbook`` returns R-DEP-12's closed formula; the
other methods solve statsmodels' exact power functions (both tails) for n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import stats as sps

from keel.errors import InvalidInput

__all__ = ["MdeKind", "SampleSize", "check_level", "sample_size_means", "sample_size_proportions"]

#: How a minimum detectable effect is stated: ``absolute`` (0.02 = two points)
#: or ``relative`` to the baseline (0.02 = 2 % of it). Never guessed (R-DEP-12).
MdeKind = Literal["absolute", "relative"]


@dataclass(frozen=True, slots=True)
class SampleSize:
    """Samples needed per arm; ``n`` is ``exact`` rounded up, for the ``control`` arm.

    ``method`` names the formula: ``textbook`` is ``n = (z_{α/2} + z_β)² σ² (1 + 1/ratio) / δ²``
    (R-DEP-12's ``2(z+z)²σ²/δ²`` when ``ratio`` = 1); ``pooled_unpooled`` solves
    statsmodels' ``power_proportions_2indep`` (pooled variance under H0,
    unpooled under H1, both tails); ``normal`` solves ``NormalIndPower`` for
    ``δ/σ``; ``arcsine`` solves ``NormalIndPower`` for Cohen's h.
    """

    n: int
    exact: float
    method: str
    delta: float  # the absolute effect the arms are sized to detect
    alpha: float
    power: float
    ratio: float  # treatment samples per control sample


def check_level(alpha: float, power: float | None = None) -> None:
    if not 0 < alpha < 1:
        raise InvalidInput("alpha must be in (0, 1)", field="alpha", value=alpha)
    if power is not None and not 0 < power < 1:
        raise InvalidInput("power must be in (0, 1)", field="power", value=power)


def _absolute_delta(mde: float, kind: str, baseline: float | None) -> float:
    if kind not in ("absolute", "relative"):
        raise InvalidInput("mde_kind must be 'absolute' or 'relative'", field="mde_kind")
    if not math.isfinite(mde) or mde == 0:
        raise InvalidInput("mde must be a non-zero number", field="mde", value=mde)
    if kind == "absolute":
        return abs(mde)
    if baseline is None or baseline == 0:
        raise InvalidInput("a relative mde needs a non-zero baseline", field="baseline")
    return abs(mde * baseline)


def _solve_n(power_of_n: Callable[[float], float], target: float, start: float) -> float:
    """Smallest real n with ``power_of_n(n) = target`` (power rises with n)."""

    def gap(n: float) -> float:
        return power_of_n(n) - target

    low, high = max(start / 4, 1e-6), max(start * 4, 2.0)
    while gap(low) > 0:
        low /= 2
    while gap(high) < 0:
        high *= 2
    # xtol/rtol at machine precision: statsmodels' own solver is the looser of the two.
    return float(optimize.brentq(gap, low, high, xtol=1e-12, rtol=4 * np.finfo(float).eps))


def _two_tailed_power(shift: float, crit: float, std_ratio: float = 1.0) -> float:
    # statsmodels' normal_power(_het): both rejection regions count.
    return float(sps.norm.sf(crit * std_ratio - shift) + sps.norm.cdf(-crit * std_ratio - shift))


def _textbook(
    var_c: float, var_t_over_ratio: float, delta: float, alpha: float, power: float
) -> float:
    z = sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power)
    return float(z**2 * (var_c + var_t_over_ratio) / delta**2)


def _result(
    exact: float, method: str, delta: float, alpha: float, power: float, ratio: float
) -> SampleSize:
    # Round to 9 significant digits first so 1864.0000000001 does not become 1865.
    return SampleSize(math.ceil(float(f"{exact:.9g}")), exact, method, delta, alpha, power, ratio)


def sample_size_proportions(
    baseline: float,
    mde: float,
    *,
    mde_kind: MdeKind,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    method: Literal["textbook", "pooled_unpooled", "arcsine"] = "textbook",
) -> SampleSize:
    """Control-arm samples to detect ``baseline → baseline + δ`` with a two-sided test.

    ``textbook`` uses ``σ² = p(1 - p)`` of the baseline in both arms (R-DEP-12:
    p = 0.05, absolute 0.02 → ≈1,864; relative 0.02 → ≈745,600). ``ratio`` is
    treatment/control samples (a 5 % canary beside a 95 % primary: 5/95).

    >>> sample_size_proportions(0.05, 0.02, mde_kind="absolute").n
    1865
    """
    check_level(alpha, power)
    if not 0 < baseline < 1:
        raise InvalidInput("baseline must be a proportion in (0, 1)", field="baseline")
    if ratio <= 0:
        raise InvalidInput("ratio must be positive", field="ratio", value=ratio)
    delta = _absolute_delta(mde, mde_kind, baseline)
    treated = baseline + delta
    if not 0 < treated < 1:
        raise InvalidInput("baseline + mde leaves (0, 1)", field="mde", value=mde)
    crit = float(sps.norm.isf(alpha / 2))
    var_b = baseline * (1 - baseline)
    textbook = _textbook(var_b, var_b / ratio, delta, alpha, power)
    if method == "textbook":
        return _result(textbook, method, delta, alpha, power, ratio)
    if method == "pooled_unpooled":
        pooled = (treated * ratio + baseline) / (1 + ratio)
        std_null = math.sqrt(pooled * (1 - pooled) * (1 + 1 / ratio))
        std_alt = math.sqrt(var_b + treated * (1 - treated) / ratio)
        exact = _solve_n(
            lambda n: _two_tailed_power(delta * math.sqrt(n) / std_alt, crit, std_null / std_alt),
            power,
            textbook,
        )
        return _result(exact, method, delta, alpha, power, ratio)
    if method == "arcsine":
        h = abs(2 * math.asin(math.sqrt(treated)) - 2 * math.asin(math.sqrt(baseline)))
        exact = _solve_n(
            lambda n: _two_tailed_power(h * math.sqrt(n * ratio / (1 + ratio)), crit),
            power,
            textbook,
        )
        return _result(exact, method, delta, alpha, power, ratio)
    raise InvalidInput(f"unknown method {method!r}", field="method")


def sample_size_means(
    sd: float,
    mde: float,
    *,
    mde_kind: MdeKind,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    method: Literal["textbook", "normal"] = "textbook",
) -> SampleSize:
    """Control-arm samples to detect a shift δ in a mean with standard deviation ``sd``.

    A ``relative`` mde needs the ``baseline`` mean. ``normal`` equals statsmodels'
    ``zt_ind_solve_power(effect_size=δ/sd, ...)``.

    >>> sample_size_means(10.0, 1.0, mde_kind="absolute").n
    1570
    """
    check_level(alpha, power)
    if not sd > 0:
        raise InvalidInput("sd must be positive", field="sd", value=sd)
    if ratio <= 0:
        raise InvalidInput("ratio must be positive", field="ratio", value=ratio)
    delta = _absolute_delta(mde, mde_kind, baseline)
    textbook = _textbook(sd**2, sd**2 / ratio, delta, alpha, power)
    if method == "textbook":
        return _result(textbook, method, delta, alpha, power, ratio)
    if method == "normal":
        crit = float(sps.norm.isf(alpha / 2))
        effect = delta / sd
        exact = _solve_n(
            lambda n: _two_tailed_power(effect * math.sqrt(n * ratio / (1 + ratio)), crit),
            power,
            textbook,
        )
        return _result(exact, method, delta, alpha, power, ratio)
    raise InvalidInput(f"unknown method {method!r}", field="method")
