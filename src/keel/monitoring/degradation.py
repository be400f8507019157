"""Performance levels with their standard errors, and drops against the reference level.

A *level* is a metric's value on some rows and its standard error. Levels come
from labels (realised: the window's labelled rows, or the version's held-out
validation rows — the reference level) or from calibrated scores alone
(estimated). A run compares the window's levels with the reference level per
configured metric (:class:`keel.monitoring.models.PerformanceThreshold`), with
:func:`keel.monitoring.stats.drop.drop_test` deciding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import roc_auc_score

from keel.monitoring.models import PerformanceThreshold
from keel.monitoring.stats.drop import auc_se, drop_test, mean_se, proportion_se, rmse_se

__all__ = [
    "HIGHER_IS_BETTER",
    "Level",
    "check_drops",
    "classification_levels",
    "estimated_levels",
    "levels_dict",
    "regression_levels",
]

#: Direction of each metric a threshold can hold (errors rise when performance drops).
HIGHER_IS_BETTER = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "roc_auc": True,
    "mae": False,
    "rmse": False,
}

Basis = Literal["realised", "estimated"]


@dataclass(frozen=True, slots=True)
class Level:
    """A metric's value on some rows and its standard error (NaN when unknown)."""

    value: float
    se: float


def classification_levels(
    y_true: NDArray[Any], y_pred: NDArray[Any], y_score: NDArray[np.float64] | None
) -> dict[str, Level]:
    """Accuracy, precision, recall (positive class 1) and, given scores, ROC AUC."""
    truth, predicted = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    levels = {"accuracy": _share(truth == predicted)}
    levels["precision"] = _share(truth[predicted])
    levels["recall"] = _share(predicted[truth])
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if y_score is not None and n_pos and n_neg:
        auc = float(roc_auc_score(truth, y_score))
        levels["roc_auc"] = Level(auc, auc_se(auc, n_pos, n_neg))
    return {k: v for k, v in levels.items() if not np.isnan(v.value)}


def regression_levels(y_true: NDArray[Any], y_pred: NDArray[Any]) -> dict[str, Level]:
    """MAE and RMSE."""
    errors = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    if errors.size == 0:
        return {}
    return {
        "mae": Level(float(np.abs(errors).mean()), mean_se(np.abs(errors))),
        "rmse": Level(float(np.sqrt((errors**2).mean())), rmse_se(errors)),
    }


def estimated_levels(
    estimate: Mapping[str, float | None], calibrated: NDArray[np.float64], predicted: NDArray[Any]
) -> dict[str, Level]:
    """Standard errors for a confidence-based estimate (:mod:`keel.monitoring.estimation`).

    ``calibrated`` are the rows' calibrated positive probabilities and
    ``predicted`` whether each row was predicted positive; expected class counts
    stand in for the unknown ones.
    """
    positive = np.asarray(predicted, dtype=bool)
    correct = np.where(positive, calibrated, 1 - calibrated)
    expected_pos = float(calibrated.sum())
    ses = {
        "accuracy": mean_se(correct),
        "precision": mean_se(calibrated[positive]),
        "recall": proportion_se(float(estimate.get("recall") or 0.0), expected_pos),
        "roc_auc": auc_se(
            float(estimate.get("roc_auc") or 0.0), expected_pos, calibrated.size - expected_pos
        ),
    }
    return {
        name: Level(float(value), ses[name])
        for name, value in estimate.items()
        if name in ses and value is not None
    }


def check_drops(
    levels: Mapping[str, Level],
    reference: Mapping[str, Level],
    thresholds: Mapping[str, PerformanceThreshold],
    *,
    alpha: float,
    basis: Basis,
) -> list[dict[str, Any]]:
    """One result per configured metric measured on both sides; ``alert`` marks a drop."""
    out: list[dict[str, Any]] = []
    for metric, limit in thresholds.items():
        current, base = levels.get(metric), reference.get(metric)
        if current is None or base is None:
            continue
        allowances = [limit.drop] if limit.drop is not None else []
        if limit.relative_drop is not None:
            allowances.append(limit.relative_drop * abs(base.value))
        test = drop_test(
            current.value,
            current.se,
            base.value,
            base.se,
            allowed=min(allowances),
            alpha=alpha,
            higher_is_better=HIGHER_IS_BETTER[metric],
        )
        item = {"metric": metric, "basis": basis, **_finite(test.as_dict())}
        item["alert"] = item.pop("is_drop")
        out.append(item)
    return out


def levels_dict(levels: Mapping[str, Level]) -> dict[str, Any]:
    """``{metric: value, metric_se: se}`` for storing with a run (NaN as None)."""
    out: dict[str, Any] = {}
    for name, level in levels.items():
        out[name] = level.value
        out[f"{name}_se"] = level.se
    return _finite(out)


def _share(hits: NDArray[Any]) -> Level:
    if hits.size == 0:
        return Level(float("nan"), float("nan"))
    value = float(np.mean(hits))
    return Level(value, proportion_se(value, hits.size))


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    # Run results are stored as JSON; PostgreSQL's JSON has no NaN.
    return {
        k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in values.items()
    }
