"""Each condition's numbers from durable state, and whether it is met.

The statistics are monitoring's (one implementation each): metrics from
:mod:`keel.monitoring.performance`, drift statistics through
:func:`keel.monitoring.drift.detect_drift`. A condition without enough data is not met
and says so; it never fires on noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from keel.automation.triggers.code import code_condition
from keel.automation.triggers.context import EvaluationContext
from keel.automation.triggers.models import PERFORMANCE_METRICS, Condition
from keel.errors import InvalidInput, KeelError

if TYPE_CHECKING:
    from keel.monitoring.drift import DriftReport

__all__ = ["Outcome", "evaluate_condition", "prefetch_drift"]

#: The per-feature drift rows kept in a record (worst first).
MAX_FEATURE_ROWS = 50


@dataclass
class Outcome:
    """One condition's verdict with the numbers behind it."""

    path: str
    metric: str
    met: bool
    value: float | None
    threshold: float | None
    reason: str
    n: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    children: list[Outcome] = field(default_factory=list)
    window_s: int | None = None  # the window the numbers come from, when there is one

    def met_windows_s(self) -> list[int]:
        """The windows of the met conditions under this one (where the signal is)."""
        if self.children:
            return [w for c in self.children if c.met for w in c.met_windows_s()]
        return [self.window_s] if self.met and self.window_s else []

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (NaN becomes None)."""
        out = asdict(self)
        out["value"] = _finite(self.value)
        out["children"] = [c.as_dict() for c in self.children]
        if not self.children:
            del out["children"]
        return out


def evaluate_condition(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    """Evaluate ``cond`` (a group: its children, combined)."""
    kind = cond.kind
    if kind == "group":
        combine = "any" if cond.any is not None else "all"
        items = cond.any or cond.all or []
        children = [
            evaluate_condition(ctx, f"{path}.{combine}[{i}]", c) for i, c in enumerate(items)
        ]
        met = any(c.met for c in children) if combine == "any" else all(c.met for c in children)
        count = sum(c.met for c in children)
        reason = f"{combine}: {count} of {len(children)} met"
        return Outcome(path, combine, met, float(count), None, reason, children=children)
    try:
        outcome = _HANDLERS[kind](ctx, path, cond)
    except KeelError as exc:
        # No reference yet, no version to read, a view removed since: this condition
        # cannot be measured now. The evaluation is still recorded, saying why.
        reason = f"not evaluated: {exc.message}"
        return Outcome(path, cond.metric or kind, False, None, _bound(cond), reason)
    if kind in ("performance", "drift", "prediction_shift"):
        default = "24h" if kind == "prediction_shift" else None
        outcome.window_s = ctx.trigger.seconds(cond.window or default)
    return outcome


# -- performance -----------------------------------------------------------------------------
def _performance(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    metric = cond.metric or ""
    lower_better = PERFORMANCE_METRICS[metric]
    window_ms = ctx.trigger.seconds(cond.window) * 1000
    end = ctx.now_ms
    current = _metric(ctx.labelled_between(end - window_ms, end), metric)
    n = current[1]
    if n < cond.min_labels or current[0] is None:
        reason = f"{metric}: {n} labelled rows in the window, need {cond.min_labels}"
        return Outcome(path, metric, False, current[0], _bound(cond), reason, n)
    value = float(current[0])
    if cond.below is not None:
        met = value < cond.below
        reason = f"{metric} {value:.4f} {'<' if met else '≥'} floor {cond.below}"
        return Outcome(path, metric, met, value, cond.below, reason, n)
    if cond.above is not None:
        met = value > cond.above
        reason = f"{metric} {value:.4f} {'>' if met else '≤'} ceiling {cond.above}"
        return Outcome(path, metric, met, value, cond.above, reason, n)
    limit = float(cond.drop if cond.drop is not None else cond.threshold or 0.0)
    baseline_ms = ctx.trigger.seconds(cond.baseline or cond.window) * 1000
    start = end - window_ms
    before = _metric(ctx.labelled_between(start - baseline_ms, start), metric)
    if before[1] < cond.min_labels or before[0] is None:
        reason = f"{metric}: {before[1]} labelled rows in the baseline, need {cond.min_labels}"
        return Outcome(path, f"{metric}_drop", False, None, limit, reason, n)
    drop = (value - before[0]) if lower_better else (before[0] - value)
    met = drop >= limit
    reason = (
        f"{metric} {value:.4f} vs {before[0]:.4f} in the baseline: drop {drop:.4f} "
        f"{'≥' if met else '<'} {limit}"
    )
    details = {"current": value, "baseline": before[0], "n_baseline": before[1]}
    return Outcome(path, f"{metric}_drop", met, drop, limit, reason, n, details)


def _metric(frame: pd.DataFrame, metric: str) -> tuple[float | None, int]:
    """The metric over labelled rows and how many rows it used."""
    from keel.monitoring.performance import classification_metrics, regression_metrics
    from keel.monitoring.performance_checks import output_values

    if not len(frame):
        return None, 0
    labelled = frame["label_value"].notna()
    rows = frame if labelled.all() else frame[labelled]
    if not len(rows):
        return None, 0
    truth = rows["label_value"].to_numpy()
    if metric == "roc_auc":  # from the scores alone
        return _roc_auc(truth, rows["score"].to_numpy(dtype=np.float64)), len(rows)
    predicted = pd.to_numeric(output_values(rows["output"]), errors="coerce").to_numpy()
    if metric in ("mae", "rmse"):
        values = regression_metrics(truth, predicted)
    else:
        values = classification_metrics(truth, predicted, only=(metric,))
    value = values.get(metric)
    return (None if value is None else float(value)), len(rows)


def _roc_auc(truth: NDArray[np.float64], scores: NDArray[np.float64]) -> float | None:
    """ROC AUC as :func:`keel.monitoring.performance.classification_metrics` gives it (None
    with one class or a missing score; scores outside [0, 1] are an InvalidInput), by the
    rank-sum formula of :func:`keel.deploy.armstats.roc_auc`: the same number without
    sklearn's ROC curve, which costs half a second over a million labels."""
    from keel.deploy.armstats import roc_auc

    if np.isnan(scores).any():
        return None
    if (scores < 0).any() or (scores > 1).any():
        raise InvalidInput("y_score: probabilities must lie in [0, 1]", field="y_score")
    positive = truth == 1
    if positive.all() or not positive.any():
        return None
    return roc_auc(scores, positive)


def _bound(cond: Condition) -> float | None:
    for value in (cond.below, cond.above, cond.drop, cond.threshold):
        if value is not None:
            return float(value)
    return None


# -- drift ---------------------------------------------------------------------------------
def prefetch_drift(ctx: EvaluationContext) -> None:
    """Start the drift conditions' window reads and tests in a background thread (see
    :meth:`EvaluationContext.prefetch`). The model and reference are resolved here first,
    so the thread touches no database; when they cannot be, nothing is prefetched and the
    conditions report why as before."""
    drifts = {path: cond for path, cond in ctx.trigger.leaves() if cond.kind == "drift"}
    if not drifts:
        return
    try:
        ctx.reference()
    except KeelError:
        return
    ctx.version_number  # noqa: B018 - resolved (and cached) in this thread
    ctx.prefetch({path: partial(_drift_report, ctx, cond) for path, cond in drifts.items()})


def _drift_report(
    ctx: EvaluationContext, cond: Condition
) -> tuple[DriftReport, int, list[str], set[str]]:
    """The drift condition's report, window size, features compared and the features its
    ``test`` applies to."""
    from keel.monitoring.drift import FeatureOverride, detect_drift
    from keel.monitoring.stats.choice import TESTS

    window_ms = ctx.trigger.seconds(cond.window) * 1000
    window = ctx.window(ctx.now_ms - window_ms, ctx.now_ms)
    reference = ctx.reference()
    names = list(cond.features) if cond.features else ctx.features(window)
    test = cond.test
    overrides = {}
    if test is not None:
        for name in names:
            kind = reference.profile.columns[name].kind
            if test in TESTS[kind]:
                overrides[name] = FeatureOverride(test=test)  # type: ignore[arg-type]
    report = detect_drift(
        reference.profile,
        window,
        features=names,
        overrides=overrides,
        correction="none" if test is not None else ctx.spec.correction,
        min_samples=cond.min_samples,
    )
    return report, len(window), names, set(overrides)


def _drift(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    metric = cond.metric or ""
    test = cond.test
    report, n, names, overrides = ctx.prefetched(path, partial(_drift_report, ctx, cond))
    rows, drifted = [], []
    for item in report.features:
        if test is None:
            over = item.drifted
        else:
            over = (
                item.feature in overrides
                and item.statistic is not None
                and item.statistic >= float(cond.threshold or 0.0)
            )
        if over:
            drifted.append(item.feature)
        rows.append(
            {
                "feature": item.feature,
                "test": item.test,
                "statistic": item.statistic,
                "pvalue": item.adjusted_pvalue,
                "verdict": item.verdict,
                "over": over,
            }
        )
    need = cond.min_features or 1
    met = len(drifted) >= need
    threshold = cond.threshold if test is not None else None
    what = f"{test} ≥ {threshold}" if test is not None else "drift by the monitor's tests"
    reason = (
        f"{what} on {len(drifted)} of {len(names)} features "
        f"({', '.join(drifted) or 'none'}); fires at {need}"
    )
    details = {"drifted": drifted, "min_features": need, "features": rows[:MAX_FEATURE_ROWS]}
    return Outcome(path, metric, met, float(len(drifted)), threshold, reason, n, details)


# -- prediction-distribution shift --------------------------------------------------------
def _prediction_shift(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    from keel.monitoring.drift import FeatureOverride, detect_drift

    window_ms = ctx.trigger.seconds(cond.window or "24h") * 1000
    baseline_ms = ctx.trigger.seconds(cond.baseline or "7d") * 1000
    start = ctx.now_ms - window_ms
    current = ctx.outputs(start, ctx.now_ms)
    baseline = ctx.outputs(start - baseline_ms, start)
    statistic = cond.statistic or "psi"
    threshold = float(cond.threshold or 0.0)
    metric = cond.metric or ""
    n = int(current.size)
    if min(current.size, baseline.size) < cond.min_samples:
        reason = (
            f"{current.size} outputs in the window and {baseline.size} in the baseline, "
            f"need {cond.min_samples} each"
        )
        return Outcome(path, metric, False, None, threshold, reason, n)
    report = detect_drift(
        pd.DataFrame({"output": baseline}),
        pd.DataFrame({"output": current}),
        overrides={"output": FeatureOverride(test=statistic)},
        correction="none",
        min_samples=cond.min_samples,
    )
    value = report.features[0].statistic
    met = value is not None and value >= threshold
    reason = f"output {statistic} {value if value is None else round(value, 4)} vs the baseline "
    reason += f"{'≥' if met else '<'} {threshold}"
    details = {"n_baseline": int(baseline.size), "statistic": statistic}
    return Outcome(path, metric, met, value, threshold, reason, n, details)


# -- volume, schedule, feature change, manual -------------------------------------------------
def _volume(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    since = ctx.last_training_ms()
    frame = ctx.labelled()
    count = int((frame["received_ms"] > since).sum()) if len(frame) else 0
    threshold = float(cond.threshold if cond.threshold is not None else cond.above or 0.0)
    met = count > threshold
    reason = f"{count} labelled rows since the last training {'>' if met else '≤'} {threshold:g}"
    return Outcome(
        path, "new_labels", met, float(count), threshold, reason, count, {"since_ms": since}
    )


def _schedule(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    import datetime as dt

    from keel.automation.cron import next_fire

    base = ctx.trigger.last_fired_at_ms or ctx.trigger.created_at_ms
    after = dt.datetime.fromtimestamp(base / 1000, dt.UTC)
    due = int(next_fire(cond.cron or "", after).timestamp() * 1000)
    met = due <= ctx.now_ms
    reason = f"schedule {cond.cron}: {'due since' if met else 'next'} {_iso(due)}"
    return Outcome(path, "schedule", met, float(due), None, reason, None, {"due_ms": due})


def _feature_change(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    since = ctx.last_training_ms()
    views = list(cond.views or dependent_views(ctx.services, ctx.trigger.model))
    changed = []
    for view in views:
        for version in ctx.services.features.history(view):
            if version.created_at_ms > since or (version.removed_at_ms or 0) > since:
                state = "removed" if version.removed_at_ms else f"version {version.version}"
                changed.append(f"{view} ({state})")
                break
    met = bool(changed)
    reason = (
        f"changed since the last training: {', '.join(changed)}"
        if met
        else f"no change to {', '.join(views) or 'no views'} since the last training"
    )
    details = {"views": views, "changed": changed, "since_ms": since}
    return Outcome(path, "feature_change", met, float(len(changed)), None, reason, None, details)


def dependent_views(services: Any, model: str) -> list[str]:
    """Feature views read by the feature services that name ``model`` (R-FEA-08)."""
    views: set[str] = set()
    for service in services.features.catalog().services.values():
        if service.model == model:
            views.update(ref.partition(":")[0] for ref in service.features)
    return sorted(views)


def _manual(ctx: EvaluationContext, path: str, cond: Condition) -> Outcome:
    reason = "asked for by hand" if ctx.manual else "not asked for"
    return Outcome(path, "manual", ctx.manual, None, None, reason)


_HANDLERS = {
    "performance": _performance,
    "drift": _drift,
    "prediction_shift": _prediction_shift,
    "volume": _volume,
    "schedule": _schedule,
    "feature_change": _feature_change,
    "manual": _manual,
    "code": code_condition,
}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
