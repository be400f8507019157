"""CUPED in the controller's live metric comparison (R-DEP-14, policy ``analysis.cuped``).

The unit is the labelled request; the covariate is one of its logged model inputs (a
pre-period value such as last month's spend, or the label's pre-deployment proxy), which
the arm cannot change, so it is independent of the assignment. :func:`keel.deploy.abstats.cuped`
gives θ = cov(Y, X) / var(X) pooled over every arm and the variance reduction; each arm's
metric becomes the mean of Y − θ (X − X̄) with standard error s/√n of the adjusted values,
so the verdict's comparison (mSPRT or fixed horizon) runs on a smaller variance. Only mean
metrics (a per-unit value: label_mean, accuracy, mae, mse, brier, log_loss) can be
adjusted; roc_auc is not a mean of per-unit values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from keel.deploy.abstats import cuped
from keel.deploy.rowmetrics import mean_estimate, metric_values, numbers
from keel.deploy.verdict import MetricEstimate

__all__ = ["adjust"]


def adjust(
    frame: pd.DataFrame, metric: str, covariate: str
) -> tuple[dict[str, MetricEstimate], dict[str, Any]]:
    """Per arm of ``frame`` (labelled rows with a ``cov`` column), the CUPED-adjusted
    ``metric``; and the summary for the decision record (θ, variance reduction, the
    unadjusted values). Empty estimates (``applied`` false, with the reason) when fewer
    than two arms have two units with both values."""
    summary: dict[str, Any] = {"covariate": covariate, "metric": metric, "applied": False}
    units: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for arm, rows in frame.groupby("arm"):
        y = metric_values(metric, rows)
        if y is None:
            return {}, {**summary, "reason": f"{metric} is not a mean of per-unit values"}
        x = numbers(rows["cov"])
        keep = np.isfinite(y) & np.isfinite(x)
        if keep.sum() >= 2:
            units[str(arm)] = (y[keep], x[keep])
    if len(units) < 2:
        return {}, {**summary, "reason": "fewer than two arms with covariate values"}
    first, *rest = units
    result = cuped(
        units[first][0],
        units[first][1],
        np.concatenate([units[a][0] for a in rest]),
        np.concatenate([units[a][1] for a in rest]),
    )
    x_mean = float(np.concatenate([x for _, x in units.values()]).mean())
    out: dict[str, MetricEstimate] = {}
    for arm, (y, x) in units.items():
        found = mean_estimate(y - result.theta * (x - x_mean))
        if found is not None:
            out[arm] = found
    summary.update(
        applied=True,
        theta=result.theta,
        variance_reduction=result.variance_reduction,
        unadjusted={arm: float(y.mean()) for arm, (y, _) in units.items()},
    )
    return out, summary
