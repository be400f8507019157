"""Distribution gates, pure: training-serving skew (KS per feature, R-CICD-03) and the
statistical equivalence of two models' predictions on the same rows (R-CICD-06).

KS comes from :mod:`keel.monitoring.stats` (keel's one implementation, shared with the
monitors), so a feature that fails this gate shows the same number on a drift dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats as sps

from keel.automation.gates.policy import EquivalencePolicy, SkewPolicy
from keel.automation.gates.result import GateResult, cannot_compute, judged
from keel.monitoring.stats import ks

__all__ = ["equivalence_gate", "skew_gate", "tost_paired"]


def _numeric(frame: pd.DataFrame, column: str) -> bool:
    dtype = frame[column].dtype
    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_bool_dtype(dtype)


def skew_gate(
    training: pd.DataFrame,
    serving: pd.DataFrame,
    policy: SkewPolicy,
    *,
    exclude: Sequence[str] = (),
) -> GateResult:
    """Two-sample KS of every numeric feature, training vs serving; fails naming each
    feature whose statistic exceeds ``max_ks`` ("tenure: KS=0.123").

    Features are ``policy.features`` or every numeric column the two frames share (minus
    ``exclude``, e.g. the label). KS compares ordered values, so categorical columns are
    listed as ``not_tested`` (their drift is the monitors' chi-square/PSI).
    """
    if policy.features is not None:
        features = list(policy.features)
        missing = [f for f in features if f not in training.columns or f not in serving.columns]
        if missing:
            return cannot_compute("skew", f"feature(s) missing from training or serving: {missing}")
        categorical = [f for f in features if not (_numeric(training, f) and _numeric(serving, f))]
        if categorical:
            return cannot_compute("skew", f"KS needs numeric features; not numeric: {categorical}")
        not_tested: list[str] = []
    else:
        shared = [c for c in training.columns if c in serving.columns and c not in exclude]
        features = [c for c in shared if _numeric(training, c) and _numeric(serving, c)]
        not_tested = [c for c in shared if c not in features]
    if not features:
        return cannot_compute("skew", "no numeric feature shared by training and serving data")
    if len(training) == 0 or len(serving) == 0:
        side = "training" if len(training) == 0 else "serving"
        return cannot_compute("skew", f"the {side} data is empty")
    result = ks(
        training[features].to_numpy(np.float64, na_value=np.nan),
        serving[features].to_numpy(np.float64, na_value=np.nan),
    )
    values = dict(zip(features, np.atleast_1d(result.statistic).tolist(), strict=True))
    empty = [f for f, v in values.items() if not np.isfinite(v)]
    if empty:
        return cannot_compute("skew", f"feature(s) with no values on one side: {empty}")
    over = sorted(
        ((f, v) for f, v in values.items() if v > policy.max_ks), key=lambda item: -item[1]
    )
    worst_feature, worst = max(values.items(), key=lambda item: item[1])
    if over:
        reason = "; ".join(f"{f}: KS={v:.3f}" for f, v in over) + f" > {policy.max_ks:g}"
    else:
        reason = (
            f"all {len(values)} features KS ≤ {policy.max_ks:g} "
            f"(max {worst_feature}: KS={worst:.3f})"
        )
    return judged(
        "skew",
        not over,
        reason,
        worst,
        policy.max_ks,
        ks=values,
        over=[f for f, _ in over],
        not_tested=not_tested,
        training_rows=len(training),
        serving_rows=len(serving),
    )


def tost_paired(
    new: ArrayLike, old: ArrayLike, margin: float, alpha: float = 0.05
) -> dict[str, float]:
    """Two one-sided paired t-tests that ``mean(new - old)`` lies within ``±margin``.

    Returns the mean difference, the ``1 - 2·alpha`` confidence interval, the TOST p-value
    (the larger one-sided p) and ``equivalent`` (1.0 when p < alpha). With no variance the
    difference is known exactly: equivalent when it lies strictly inside the margin.

    Examples
    --------
    >>> r = tost_paired([0.5, 0.6, 0.7, 0.4], [0.5, 0.6, 0.7, 0.4], margin=0.01)
    >>> r["equivalent"], r["pvalue"]
    (1.0, 0.0)
    """
    d = np.asarray(new, np.float64) - np.asarray(old, np.float64)
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if sd == 0.0:
        inside = abs(mean) < margin
        pvalue = 0.0 if inside else 1.0
        return {"mean_diff": mean, "ci_low": mean, "ci_high": mean, "pvalue": pvalue,
                "equivalent": float(inside), "n": float(n)}  # fmt: skip
    lower = sps.ttest_1samp(d, -margin, alternative="greater")
    upper = sps.ttest_1samp(d, margin, alternative="less")
    pvalue = float(max(lower.pvalue, upper.pvalue))
    half = float(sps.t.ppf(1 - alpha, n - 1)) * sd / np.sqrt(n)
    return {
        "mean_diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "pvalue": pvalue,
        "equivalent": float(pvalue < alpha),
        "n": float(n),
    }


def equivalence_gate(
    challenger: ArrayLike, champion: ArrayLike, policy: EquivalencePolicy
) -> GateResult:
    """The challenger's mean predicted probability is equivalent to the champion's within
    ``margin`` × the champion's mean (paired TOST on the same rows).

    Why TOST, not "KS does not reject": failing to find a difference is not evidence of
    equivalence (a small holdout passes anything, a large one rejects trivial shifts);
    TOST puts the burden of proof on equivalence and reads as the requirement's "diverge
    by more than 1-5%". The KS statistic of the two prediction distributions is reported
    beside it (keel's one KS).
    """
    new, old = np.asarray(challenger, np.float64), np.asarray(champion, np.float64)
    if new.size < 2 or new.shape != old.shape:
        return cannot_compute("equivalence", f"need ≥ 2 paired predictions, got {new.size}")
    if not (np.isfinite(new).all() and np.isfinite(old).all()):
        return cannot_compute("equivalence", "predictions contain NaN or infinity")
    base = float(np.mean(old))
    margin = policy.margin * abs(base)
    if margin == 0.0:
        return cannot_compute("equivalence", "the champion's mean prediction is 0")
    result = tost_paired(new, old, margin, policy.alpha)
    shape = ks(old, new)
    ok = result["equivalent"] == 1.0
    level = round(100 * (1 - 2 * policy.alpha))
    reason = (
        f"mean prediction {float(np.mean(new)):.4f} vs {base:.4f}: Δ {result['mean_diff']:+.4f}, "
        f"{level}% CI [{result['ci_low']:+.4f}, {result['ci_high']:+.4f}] "
        f"{'within' if ok else 'not within'} ±{margin:.4f} ({policy.margin:.0%}), "
        f"TOST p={result['pvalue']:.3g}"
    )
    return judged(
        "equivalence",
        ok,
        reason,
        result["pvalue"],
        policy.alpha,
        method="paired TOST on mean predicted probability",
        challenger_mean=float(np.mean(new)),
        champion_mean=base,
        margin_abs=margin,
        prediction_ks=float(shape.statistic),
        **{k: v for k, v in result.items() if k != "equivalent"},
    )
