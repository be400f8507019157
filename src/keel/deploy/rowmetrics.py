"""Per-row values of the mean metrics an arm is judged on (pure, over a labelled frame).

Shared by :mod:`keel.deploy.armstats` (an arm's metric, its standard error) and
:mod:`keel.deploy.livecuped` (CUPED needs each unit's value, not only the mean). Columns
of a labelled frame: ``output``, ``score`` (positive-class probability), ``y`` (label
value) and ``t`` (label text).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from keel.deploy.verdict import MetricEstimate

__all__ = ["mean_estimate", "metric_values", "numbers", "score_of"]


def numbers(values: pd.Series) -> np.ndarray[Any, Any]:
    """``values`` as float64, NaN where not a number."""
    out: np.ndarray[Any, Any] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    return out


def _truth(rows: pd.DataFrame) -> np.ndarray[Any, Any]:
    # label_value when the label is a number, else the label's JSON text decoded.
    values = rows["y"].to_numpy(dtype=np.float64, na_value=np.nan)
    texts = [json.loads(t) if isinstance(t, str) else t for t in rows["t"]]
    return np.array(
        [str(t) if math.isnan(v) else repr(float(v)) for v, t in zip(values, texts, strict=True)]
    )


def mean_estimate(values: np.ndarray[Any, Any]) -> MetricEstimate | None:
    """Mean and its standard error s/sqrt(n) of the non-NaN values; None under two."""
    values = values[~np.isnan(values)]
    if values.size < 2:
        return None
    return MetricEstimate(
        float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size)), int(values.size)
    )


def metric_values(name: str, rows: pd.DataFrame) -> np.ndarray[Any, Any] | None:
    """Per-row values of a mean metric (NaN where undefined), aligned with ``rows`` (columns
    ``output``, ``score``, ``y`` label value, ``t`` label text); None for roc_auc."""
    y = numbers(rows["y"])
    values: np.ndarray[Any, Any]
    if name == "label_mean":
        values = y
    elif name == "accuracy":
        predicted = np.array([_normal(o) for o in rows["output"]])
        values = (predicted == _truth(rows)).astype(np.float64)
    elif name in ("mae", "mse"):
        error = numbers(rows["output"]) - y
        values = np.abs(error) if name == "mae" else error**2
    elif name == "roc_auc":
        return None
    else:
        score = np.clip(score_of(rows), 1e-15, 1 - 1e-15)  # NaN stays NaN (mean_estimate drops)
        if name == "brier":
            values = (score - y) ** 2
        else:  # log_loss
            values = -(y * np.log(score) + (1 - y) * np.log(1 - score))
    return values


def score_of(rows: pd.DataFrame) -> np.ndarray[Any, Any]:
    """The score column, or the output when no score was logged (a regressor)."""
    score = numbers(rows["score"])
    return numbers(rows["output"]) if np.isnan(score).all() else score


def _normal(output: Any) -> str:
    try:
        return repr(float(output))
    except (TypeError, ValueError):
        text = str(output)
        try:
            return str(json.loads(text))
        except ValueError:
            return text
