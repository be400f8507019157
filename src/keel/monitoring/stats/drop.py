"""Has a performance metric dropped below its reference level, beyond sampling noise?

A metric measured on a window (from labels, or estimated from scores) is
compared with the same metric on the reference (the version's validation
data). It *drops* when it moved the bad way (down for accuracy or AUC, up for
an error such as MAE) by more than an allowed amount (hardening #15.15). A
drop is only reported when it is also beyond sampling noise: one-sided
``z = drop / sqrt(se_window² + se_reference²)`` above the normal quantile at
``alpha`` — with 30 labels a 0.05 accuracy drop is within one standard error,
and alerting on it would page someone for a quarter of healthy windows.

Standard errors: a share (accuracy, precision, recall) ``sqrt(v (1 − v) / n)``;
a mean of per-row values (MAE) ``sd / sqrt(n)``; RMSE by the delta method
``sd(e²) / (2 · rmse · sqrt(n))``; ROC AUC by Hanley & McNeil (1982).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from keel.errors import InvalidInput

__all__ = ["DropTest", "auc_se", "drop_test", "mean_se", "proportion_se", "rmse_se"]


def proportion_se(value: float, n: float) -> float:
    """Standard error of a share ``value`` measured on ``n`` rows (NaN when ``n`` ≤ 0).

    Examples
    --------
    >>> round(proportion_se(0.8, 100), 4)
    0.04
    """
    if n <= 0:
        return float("nan")
    return float(np.sqrt(max(value * (1 - value), 0.0) / n))


def mean_se(values: ArrayLike) -> float:
    """Standard error of the mean of per-row values (``ddof=1``; NaN under two rows).

    Examples
    --------
    >>> round(mean_se([1.0, 2.0, 3.0, 4.0]), 4)
    0.6455
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size < 2:
        return float("nan")
    return float(array.std(ddof=1) / np.sqrt(array.size))


def rmse_se(errors: ArrayLike) -> float:
    """Standard error of the RMSE of ``errors`` by the delta method (NaN under two rows).

    Examples
    --------
    >>> round(rmse_se([1.0, -1.0, 2.0, -2.0]), 4)
    0.2739
    """
    squared = np.asarray(errors, dtype=np.float64) ** 2
    if squared.size < 2:
        return float("nan")
    rmse = float(np.sqrt(squared.mean()))
    if rmse == 0:
        return 0.0
    return mean_se(squared) / (2 * rmse)


def auc_se(auc: float, n_positive: float, n_negative: float) -> float:
    """Hanley & McNeil's standard error of a ROC AUC from the class counts.

    Counts may be fractional (expected counts of an estimate). NaN when a
    class is empty.

    Examples
    --------
    >>> round(auc_se(0.8, 50, 50), 4)
    0.0445
    """
    if n_positive <= 0 or n_negative <= 0:
        return float("nan")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (
        auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)
    ) / (n_positive * n_negative)
    return float(np.sqrt(max(variance, 0.0)))


@dataclass(frozen=True, slots=True)
class DropTest:
    """A metric against its reference level, the allowed drop and the verdict."""

    value: float
    reference: float
    drop: float
    allowed: float
    z: float
    pvalue: float
    is_drop: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (infinite z as None)."""
        out = asdict(self)
        out["z"] = self.z if np.isfinite(self.z) else None
        return out


def drop_test(
    value: float,
    se: float,
    reference: float,
    reference_se: float,
    *,
    allowed: float,
    alpha: float,
    higher_is_better: bool = True,
) -> DropTest:
    """Did ``value`` fall below ``reference`` by more than ``allowed``, beyond noise at ``alpha``?

    ``drop`` is measured the bad way (``reference − value`` for higher-is-better
    metrics, ``value − reference`` otherwise). A NaN standard error (too few
    rows to estimate one) counts as unknown noise: never a drop.

    Examples
    --------
    >>> t = drop_test(0.70, 0.01, 0.80, 0.01, allowed=0.05, alpha=0.01)
    >>> round(t.drop, 2), t.is_drop
    (0.1, True)
    >>> drop_test(0.70, 0.08, 0.80, 0.01, allowed=0.05, alpha=0.01).is_drop  # 30 labels
    False
    """
    if not 0 < alpha < 1:
        raise InvalidInput(f"alpha: must be in (0, 1), got {alpha}", field="alpha")
    if allowed < 0:
        raise InvalidInput(f"allowed: must be ≥ 0, got {allowed}", field="allowed")
    drop = (reference - value) if higher_is_better else (value - reference)
    noise = float(np.hypot(se, reference_se))
    if np.isnan(noise) or np.isnan(drop):
        z, pvalue = float("nan"), float("nan")
    elif noise == 0:
        z = float("inf") if drop > 0 else 0.0
        pvalue = 0.0 if drop > 0 else 0.5
    else:
        z = drop / noise
        pvalue = float(sps.norm.sf(z))
    is_drop = bool(drop > allowed and pvalue < alpha)
    return DropTest(float(value), float(reference), float(drop), float(allowed), z, pvalue, is_drop)
