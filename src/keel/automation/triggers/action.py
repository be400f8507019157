"""What a met trigger does, decided by the diagnosis (R-TRN-20, R-TRN-21).

==============================  ==============================================================
diagnosis                       action
==============================  ==============================================================
data drift, no clear cause,     retrain on fresh samples (``mode: fresh``)
nothing to diagnose
concept drift (the verdict, or  retrain only on rows predicted after the change point
scored ≥ 0.3 under another)     (``mode: after_change_point``, ``since_ms``)
data-quality break, upstream    no retraining: an alert (a ``diagnosis`` decision); a model
staleness                       retrained on corrupted or stale data would learn the break
==============================  ==============================================================

The diagnosis is monitoring's (:func:`keel.monitoring.diagnosis.diagnose`) over the
trigger's window; the change point is the split of the labelled rows' errors that best
separates a low error rate before from a higher one after (:func:`change_point`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.automation.triggers.context import EvaluationContext

__all__ = ["Action", "change_point", "decide_action"]

log = logging.getLogger("keel.triggers")

NO_RETRAIN = ("data-quality break", "upstream staleness")
#: Fewer rows in the window than this and nothing is diagnosed (retrain on fresh data).
MIN_ROWS = 30


@dataclass
class Action:
    """``retrain`` (with the data it may use) or ``alert``; the diagnosis behind it."""

    kind: str  # "retrain" | "alert"
    verdict: str
    mode: str = "fresh"
    since_ms: int | None = None
    diagnosis: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> dict[str, Any]:
        """The ``data`` argument of the ``retrain.run`` job."""
        return {"mode": self.mode, "since_ms": self.since_ms}


def decide_action(ctx: EvaluationContext, window_s: int | None = None) -> Action:
    """Diagnose the window that fired (``window_s``, default the trigger's) and pick the
    action (see the module table)."""
    end = ctx.now_ms
    start = end - (window_s or ctx.trigger.seconds(None)) * 1000
    fresh_since = start
    try:
        window = ctx.window(start, end)
    except Exception as exc:  # no log yet, a version that does not resolve: nothing to diagnose
        return Action(
            "retrain", "not diagnosed", since_ms=fresh_since, diagnosis={"note": str(exc)}
        )
    if len(window) < MIN_ROWS:
        note = f"{len(window)} predictions in the window; not diagnosed"
        return Action("retrain", "not diagnosed", since_ms=fresh_since, diagnosis={"note": note})
    try:
        diagnosis = _diagnose(ctx, window, start, end)
    except Exception as exc:  # a model that cannot be loaded or scored here must not block
        log.warning("trigger %s: diagnosis failed: %s", ctx.trigger.name, exc)
        note = f"diagnosis failed: {exc}"
        return Action("retrain", "not diagnosed", since_ms=fresh_since, diagnosis={"note": note})
    verdict = str(diagnosis["verdict"])
    if verdict in NO_RETRAIN:
        return Action("alert", verdict, diagnosis=diagnosis)
    if verdict == "concept drift" or _concept_changed(diagnosis):
        rows = ctx.labelled_between(start, end)
        at = change_point(rows["ts_ms"].to_numpy(), _errors(rows)) if len(rows) else None
        return Action("retrain", verdict, "after_change_point", at or start, diagnosis)
    return Action("retrain", verdict, since_ms=fresh_since, diagnosis=diagnosis)


def _concept_changed(diagnosis: dict[str, Any]) -> bool:
    """Concept drift scored as a cause too, under another verdict (a shift that moves the
    inputs and how the label depends on them, e.g. a feature whose meaning was inverted):
    rows labelled before the change point would teach the old answer, and rows after it
    are fresh samples as well, so they serve the data drift too."""
    from keel.monitoring.diagnosis import VERDICT_MIN

    score = (diagnosis.get("scores") or {}).get("concept drift")
    return score is not None and float(score) >= VERDICT_MIN


def _diagnose(ctx: EvaluationContext, window: pd.DataFrame, start: int, end: int) -> dict[str, Any]:
    from keel.monitoring.diagnosis import diagnose

    services = ctx.services
    reference = ctx.reference().frame
    features = ctx.features(window)
    version = ctx.version
    if version is None:
        raise ValueError("the trigger's version does not resolve")
    model = services.monitors.load_model(version)
    label = _label_column(ctx, reference, features)
    labelled = calibration = None
    if label is not None:
        calibration = (reference, reference[label].to_numpy())
        # with their features (the evaluation read only outputs and labels)
        rows = services.feedback.labelled(
            ctx.trigger.model, ctx.version_number, start, end, as_of=ctx.now_ms
        )
        rows = rows[rows["label_value"].notna()] if len(rows) else rows
        if len(rows) >= MIN_ROWS:
            from keel.monitoring.inputs import strip_prefix

            rows = strip_prefix(rows)
            labelled = (rows, rows["label_value"].to_numpy())
    freshness = None
    views = getattr(ctx.spec, "feature_views", None)
    if views:
        freshness = {
            r.view: (float(r.age_s), float(r.sla_s))
            for r in services.features.freshness(views)
            if r.age_s is not None and r.sla_s
        }
    result = diagnose(
        model,
        reference,
        window,
        features,
        calibration=calibration,
        labelled=labelled,
        freshness=freshness,
        correction=ctx.spec.correction,
        alpha=ctx.spec.performance_alpha,
    )
    out = result.as_dict()
    out.pop("slices", None)
    out["attributions"] = out["attributions"][:10]
    return out


def _label_column(
    ctx: EvaluationContext, reference: pd.DataFrame, features: list[str]
) -> str | None:
    """The reference's label column: the monitor's, else the one reference column that is
    not a logged feature."""
    if ctx.spec.label_column:
        return ctx.spec.label_column
    others = [c for c in reference.columns if c not in features]
    return others[0] if len(others) == 1 else None


def _errors(rows: pd.DataFrame) -> np.ndarray:
    from keel.monitoring.performance_checks import output_values

    predicted = pd.to_numeric(output_values(rows["output"]), errors="coerce").to_numpy()
    errors: np.ndarray = (predicted != rows["label_value"].to_numpy()).astype(np.float64)
    return errors


def change_point(times_ms: np.ndarray, errors: np.ndarray) -> int | None:
    """The time after which the error rate rose most: the split maximising the CUSUM
    statistic ``|S_k − k·S_n/n|`` of the errors in time order; None with fewer than 20 rows
    or no rise.

    Examples
    --------
    >>> times = np.arange(100)
    >>> change_point(times, np.r_[np.zeros(60), np.ones(40)])
    60
    """
    order = np.argsort(times_ms, kind="stable")
    x = np.asarray(errors, dtype=np.float64)[order]
    t = np.asarray(times_ms)[order]
    n = x.size
    if n < 20:
        return None
    cusum = np.cumsum(x) - np.arange(1, n + 1) * x.mean()
    k = int(np.argmin(cusum[:-1]))  # the lowest point: errors below average before it
    if x[k + 1 :].mean() <= x[: k + 1].mean():
        return None
    return int(t[k + 1])
