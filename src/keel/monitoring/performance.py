"""Model performance from ground-truth labels (feedback), overall and per slice."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn import metrics as skm

from keel.errors import InvalidInput

__all__ = [
    "SliceResult",
    "calibration_error",
    "classification_metrics",
    "regression_metrics",
    "slice_metrics",
]

#: Fewer labelled rows than this and metrics are not computed ("insufficient data").
MIN_LABELS = 30


def calibration_error(
    y_true: Sequence[int] | NDArray[Any], y_score: Sequence[float] | NDArray[Any], bins: int = 10
) -> float:
    """Expected calibration error of binary probabilities.

    ``ECE = Σ_b (n_b / n) · |mean(y in b) − mean(p in b)|`` over ``bins``
    equal-width probability bins (a score of exactly 1.0 falls in the last
    bin). 0 means the scores can be read as probabilities.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_score, dtype=np.float64)
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    sum_y = np.bincount(index, weights=y, minlength=bins)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    used = counts > 0
    gaps = np.abs(sum_y[used] - sum_p[used])  # = n_b * |mean_y - mean_p|
    return float(gaps.sum() / y.size)


def classification_metrics(
    y_true: Sequence[Any] | NDArray[Any],
    y_pred: Sequence[Any] | NDArray[Any],
    y_score: Sequence[float] | NDArray[Any] | None = None,
    *,
    positive: Any = 1,
    only: Collection[str] | None = None,
) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1 and, given positive-class scores, ROC AUC, log loss,
    Brier score and calibration error (binary: ``positive`` is the positive label).

    Metrics undefined on the data (AUC with a single class) are None. ``only`` computes
    just those metrics (and ``n``): a trigger over a million labels needs one of them.
    """

    def wanted(name: str) -> bool:
        return only is None or name in only

    y_true_arr, y_pred_arr = np.asarray(y_true), np.asarray(y_pred)
    _same_length(y_true_arr, y_pred_arr, "y_pred")
    out: dict[str, float | None] = {"n": float(y_true_arr.size)}
    if wanted("accuracy"):
        out["accuracy"] = float(skm.accuracy_score(y_true_arr, y_pred_arr))
    if wanted("precision"):
        out["precision"] = float(
            skm.precision_score(y_true_arr, y_pred_arr, pos_label=positive, zero_division=0)
        )
    if wanted("recall"):
        out["recall"] = float(
            skm.recall_score(y_true_arr, y_pred_arr, pos_label=positive, zero_division=0)
        )
    if wanted("f1"):
        out["f1"] = float(skm.f1_score(y_true_arr, y_pred_arr, pos_label=positive, zero_division=0))
    if y_score is None:
        return out
    scores = np.asarray(y_score, dtype=np.float64)
    _same_length(y_true_arr, scores, "y_score")
    if np.isnan(scores).any() or (scores < 0).any() or (scores > 1).any():
        raise InvalidInput("y_score: probabilities must lie in [0, 1]", field="y_score")
    binary = (y_true_arr == positive).astype(int)
    if wanted("roc_auc"):
        two_classes = np.unique(binary).size == 2
        out["roc_auc"] = float(skm.roc_auc_score(binary, scores)) if two_classes else None
    if wanted("log_loss"):
        out["log_loss"] = float(skm.log_loss(binary, scores, labels=[0, 1]))
    if wanted("brier"):
        out["brier"] = float(skm.brier_score_loss(binary, scores, pos_label=1))
    if wanted("calibration_error"):
        out["calibration_error"] = calibration_error(binary, scores)
    return out


def regression_metrics(
    y_true: Sequence[float] | NDArray[Any], y_pred: Sequence[float] | NDArray[Any]
) -> dict[str, float | None]:
    """MAE, RMSE and MAPE (MAPE ignores rows whose true value is 0; None if all are)."""
    truth = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    _same_length(truth, pred, "y_pred")
    nonzero = truth != 0
    mape = (
        float(np.mean(np.abs((truth[nonzero] - pred[nonzero]) / truth[nonzero])))
        if nonzero.any()
        else None
    )
    return {
        "n": float(truth.size),
        "mae": float(skm.mean_absolute_error(truth, pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(truth, pred))),
        "mape": mape,
    }


@dataclass(frozen=True, slots=True)
class SliceResult:
    """One segment's metric compared with the whole population."""

    column: str
    value: Any
    n: int
    metric: str
    score: float | None
    overall: float | None

    @property
    def gap(self) -> float | None:
        """How much worse than overall (positive = worse, for higher-is-better metrics)."""
        if self.score is None or self.overall is None:
            return None
        return self.overall - self.score


def slice_metrics(
    frame: pd.DataFrame,
    by: Sequence[str],
    metric: str,
    compute: Callable[[pd.DataFrame], dict[str, float | None]],
    *,
    min_rows: int = MIN_LABELS,
    predicates: dict[str, Callable[[pd.DataFrame], pd.Series]] | None = None,
) -> list[SliceResult]:
    """``metric`` per value of each ``by`` column and per named predicate, worst first.

    ``compute`` maps a labelled frame to a metrics dict (e.g. a lambda over
    :func:`classification_metrics`); segments smaller than ``min_rows`` get
    score None and sort last, so a 3-row segment never tops the list by chance.
    """
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise InvalidInput(f"by: no such column: {', '.join(missing)}", field="by")
    overall = compute(frame).get(metric) if len(frame) >= min_rows else None
    results: list[SliceResult] = []
    for column in by:
        for value, part in frame.groupby(column, dropna=False, observed=True):
            results.append(_slice(column, value, part, metric, compute, min_rows, overall))
    for name, predicate in (predicates or {}).items():
        part = frame[predicate(frame).astype(bool)]
        results.append(_slice("predicate", name, part, metric, compute, min_rows, overall))
    return sorted(results, key=lambda r: (r.gap is None, -(r.gap or 0.0)))


def _slice(
    column: str,
    value: Any,
    part: pd.DataFrame,
    metric: str,
    compute: Callable[[pd.DataFrame], dict[str, float | None]],
    min_rows: int,
    overall: float | None,
) -> SliceResult:
    score = compute(part).get(metric) if len(part) >= min_rows else None
    return SliceResult(column, value, len(part), metric, score, overall)


def _same_length(a: NDArray[Any], b: NDArray[Any], field: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise InvalidInput(f"{field}: {b.shape[0]} values for {a.shape[0]} labels", field=field)
    if a.shape[0] == 0:
        raise InvalidInput(f"{field}: no rows", field=field)
