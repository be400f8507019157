"""Fit the decay rate λ of ``A(t) = A0·e^(−λt)`` to a model's performance history (R-TRN-12)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import OptimizeWarning, curve_fit

from keel.errors import InvalidInput

__all__ = ["DecayFit", "fit_decay"]

#: 1.96: the normal quantile of a two-sided 95% interval.
_Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class DecayFit:
    """λ and A0 fitted by least squares, with standard errors from the fit's covariance.

    ``half_life_days`` is ``ln 2 / λ`` and its standard error follows by the delta
    method (``ln 2 · se(λ) / λ²``); both are None when λ ≤ 0 (performance did not
    fall, so there is no half-life). A standard error is None when the data do not
    determine it (e.g. three points exactly on the curve give 0, not None).
    """

    a0: float
    a0_se: float | None
    decay_per_day: float
    decay_se: float | None
    decay_ci95: tuple[float, float] | None
    half_life_days: float | None
    half_life_se_days: float | None
    rmse: float
    n_points: int
    assumptions: tuple[str, ...]


def _model(t: NDArray[np.float64], a0: float, lam: float) -> NDArray[np.float64]:
    return a0 * np.exp(-lam * t)


def _as_vector(values: ArrayLike, field: str) -> NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"{field} must be numbers", field=field) from error
    if array.ndim != 1:
        raise InvalidInput(f"{field} must be one-dimensional", field=field, ndim=array.ndim)
    if not np.all(np.isfinite(array)):
        raise InvalidInput(f"{field} must be finite (no NaN or infinity)", field=field)
    return array


def fit_decay(days: ArrayLike, performance: ArrayLike) -> DecayFit:
    """Fit ``performance ≈ A0·e^(−λ·days)`` by nonlinear least squares.

    ``days`` is the time since the model was trained, ≥ 0; ``performance`` the
    accuracy (or AUC) measured then, in (0, 1]. At least three points on at least
    two distinct days. The log-linear fit seeds ``scipy.optimize.curve_fit``,
    whose covariance gives the standard errors.

    Examples
    --------
    >>> days = [0, 10, 20, 30]
    >>> fit = fit_decay(days, [0.95 * math.exp(-0.02 * d) for d in days])
    >>> round(fit.decay_per_day, 4), round(fit.half_life_days, 1)
    (0.02, 34.7)
    """
    t = _as_vector(days, "days")
    y = _as_vector(performance, "performance")
    if t.size != y.size:
        raise InvalidInput(
            "days and performance must have the same length",
            field="performance",
            days=int(t.size),
            performance=int(y.size),
        )
    if y.size < 3:
        raise InvalidInput("at least 3 points are needed", field="performance", n=int(y.size))
    if np.any(t < 0):
        raise InvalidInput("days since training must be ≥ 0", field="days")
    if np.unique(t).size < 2:
        raise InvalidInput("days must hold at least two distinct times", field="days")
    if np.any(y <= 0) or np.any(y > 1):
        raise InvalidInput("performance must be in (0, 1]", field="performance")

    slope, intercept = np.polyfit(t, np.log(y), 1)
    with warnings.catch_warnings():
        # A fit with no residual degrees of freedom left warns and returns an
        # infinite covariance; that is reported below as "standard error unknown".
        warnings.simplefilter("ignore", OptimizeWarning)
        params, cov = curve_fit(_model, t, y, p0=(math.exp(intercept), -slope), maxfev=10_000)
    a0, lam = float(params[0]), float(params[1])
    a0_se, lam_se = (_se(cov[i, i]) for i in range(2))
    rmse = float(np.sqrt(np.mean((y - _model(t, a0, lam)) ** 2)))

    notes = [
        "Exponential decay A(t) = A0·e^(−λt) with constant λ; a step change (concept drift) "
        "or a recovery in the history is averaged into λ, not detected.",
        "Points are independent with equal noise; days count from the training date.",
    ]
    half_life = half_life_se = None
    if lam > 0:
        half_life = math.log(2) / lam
        half_life_se = None if lam_se is None else math.log(2) * lam_se / lam**2
    else:
        notes.append("λ ≤ 0: performance did not fall over this history, so it has no half-life.")
    return DecayFit(
        a0=a0,
        a0_se=a0_se,
        decay_per_day=lam,
        decay_se=lam_se,
        decay_ci95=None if lam_se is None else (lam - _Z95 * lam_se, lam + _Z95 * lam_se),
        half_life_days=half_life,
        half_life_se_days=half_life_se,
        rmse=rmse,
        n_points=int(y.size),
        assumptions=tuple(notes),
    )


def _se(variance: float) -> float | None:
    return math.sqrt(variance) if math.isfinite(variance) and variance >= 0 else None
