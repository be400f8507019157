"""Cost-optimal decision threshold (R-COST-08), pure: choose T minimising the expected cost
``FP(T)·cost_fp + FN(T)·cost_fn`` per prediction, with the cost curve around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from keel.errors import InvalidInput

__all__ = ["CostCurve", "cost_at", "optimal_threshold", "threshold_from_rates"]

#: Thresholds the report's cost curve shows (the optimum is added to them).
CURVE_POINTS = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass(frozen=True, slots=True)
class CostCurve:
    """The minimising threshold, its expected cost per prediction and the curve.

    ``curve`` lists ``{"threshold", "cost", "fp", "fn"}`` at :data:`CURVE_POINTS` (costs
    are per prediction: ``(FP·cost_fp + FN·cost_fn) / n``).
    """

    threshold: float
    cost: float
    fp: int
    fn: int
    cost_at_half: float
    cost_fp: float
    cost_fn: float
    rows: int
    curve: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "threshold": self.threshold,
            "expected_cost": self.cost,
            "fp": self.fp,
            "fn": self.fn,
            "expected_cost_at_0.5": self.cost_at_half,
            "saving_vs_0.5": self.cost_at_half - self.cost,
            "cost_fp": self.cost_fp,
            "cost_fn": self.cost_fn,
            "rows": self.rows,
            "curve": self.curve,
        }


def _check(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(scores, np.float64)
    if y.size == 0 or y.shape != s.shape:
        raise InvalidInput(
            f"need paired labels and scores, got {y.size} and {s.size}", field="scores"
        )
    if not np.isfinite(s).all():
        raise InvalidInput("scores contain NaN or infinity", field="scores")
    return y, s


def cost_at(
    y_true: ArrayLike, scores: ArrayLike, threshold: float, cost_fp: float, cost_fn: float
) -> tuple[float, int, int]:
    """Expected cost per prediction, FP and FN when ``score ≥ threshold`` means positive."""
    y, s = _check(y_true, scores)
    decided = s >= threshold
    fp = int(np.sum(decided & (y == 0)))
    fn = int(np.sum(~decided & (y == 1)))
    return (fp * cost_fp + fn * cost_fn) / y.size, fp, fn


def optimal_threshold(
    y_true: ArrayLike, scores: ArrayLike, cost_fp: float, cost_fn: float
) -> CostCurve:
    """The exact minimum over every distinct classification of these rows (O(n log n)).

    Candidates are cuts between adjacent distinct scores; the threshold returned is the
    midpoint of the winning cut (the same decisions on these rows, less sensitive to the
    next ones). Ties in cost go to the higher threshold (fewer positives).

    Examples
    --------
    >>> r = optimal_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], cost_fp=1, cost_fn=5)
    >>> round(r.threshold, 3), r.fp, r.fn
    (0.225, 1, 0)
    """
    y, s = _check(y_true, scores)
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    positives = int(y.sum())
    # Predicting the top k rows positive, k = 0..n; only cuts between distinct scores count.
    tp = np.concatenate([[0], np.cumsum(y_desc)])
    fp = np.concatenate([[0], np.cumsum(1 - y_desc)])
    fn = positives - tp
    distinct = np.concatenate([[True], s_desc[1:] != s_desc[:-1], [True]])
    ks = np.flatnonzero(distinct)  # k where the cut falls between two different scores
    costs = fp[ks] * cost_fp + fn[ks] * cost_fn
    best = int(ks[int(np.argmin(costs))])  # argmin takes the first: the smallest k
    if best == 0:
        top = float(s_desc[0])
        threshold = (top + 1.0) / 2 if top < 1.0 else float(np.nextafter(top, np.inf))
    elif best == s.size:
        threshold = float(s_desc[-1]) / 2
    else:
        threshold = (float(s_desc[best - 1]) + float(s_desc[best])) / 2
    n = y.size
    curve = []
    for point in sorted({*CURVE_POINTS, round(threshold, 4)}):
        cost, f_p, f_n = cost_at(y, s, point, cost_fp, cost_fn)
        curve.append({"threshold": point, "cost": cost, "fp": f_p, "fn": f_n})
    return CostCurve(
        threshold=threshold,
        cost=float(fp[best] * cost_fp + fn[best] * cost_fn) / n,
        fp=int(fp[best]),
        fn=int(fn[best]),
        cost_at_half=cost_at(y, s, 0.5, cost_fp, cost_fn)[0],
        cost_fp=cost_fp,
        cost_fn=cost_fn,
        rows=n,
        curve=curve,
    )


def threshold_from_rates(
    fp_rate: Callable[[np.ndarray], np.ndarray],
    fn_rate: Callable[[np.ndarray], np.ndarray],
    cost_fp: float,
    cost_fn: float,
    *,
    points: int = 100_001,
) -> float:
    """The T in [0, 1] minimising ``fp_rate(T)·cost_fp + fn_rate(T)·cost_fn`` for modelled
    rate curves (a grid of ``points``), as in R-COST-08's fraud reference.

    Examples
    --------
    >>> fp = lambda t: 1 / (1 + np.exp(8 * (t - 0.3)))
    >>> fn = lambda t: 1 / (1 + np.exp(-8 * (t - 0.7)))
    >>> round(threshold_from_rates(fp, fn, cost_fp=100, cost_fn=500), 2)
    0.34
    >>> round(threshold_from_rates(fp, fn, cost_fp=100, cost_fn=100), 2)
    0.5
    """
    grid = np.linspace(0.0, 1.0, points)
    total = fp_rate(grid) * cost_fp + fn_rate(grid) * cost_fn
    return float(grid[int(np.argmin(total))])
