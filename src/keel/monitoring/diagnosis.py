"""Why is this window bad? Rank the usual causes with the numbers behind each.

Four explanations are scored from 0 (no evidence) to 1 (strong evidence):

- **data-quality break** — the window fails data-quality checks: 1 for an
  error (a missing column, values that no longer parse, a null-rate jump,
  most of a column outside the reference range: a unit change), 0.2 for
  warnings only (a few out-of-range values, new categories: usually drift);
- **upstream staleness** — a source feeding the features is older than its
  freshness SLA (``freshness``: source → (age seconds, SLA seconds));
  score = how far past the SLA, capped at 1 when twice the SLA;
- **data drift** — inputs moved: the share of the model's attention (mean
  |SHAP| on the reference) that sits on drifted features (the plain share of
  drifted features when no attributions are available), divided by 0.2 and
  capped at 1 — drift in features carrying a fifth of the model's attention
  is enough to explain a bad window. A feature with a data-quality error is
  not counted: the break explains its "drift";
- **concept drift** — P(y | x) changed: realised accuracy of the labelled
  rows below what the model's own calibrated confidence expects for *those
  rows* (the confidence-based estimate holds under covariate shift but not
  under concept drift), by a one-sided Poisson-binomial test at ``alpha``
  and by more than ``CONCEPT_MIN_GAP``
  (:meth:`keel.monitoring.estimation.ConfidenceEstimator.concept_drift`, the
  rule a monitor run applies); then score = 0.3 + 0.7 · (gap − 0.02) / 0.08,
  so 1 at a 0.10 gap; 0 otherwise. Needs labels.

The window is diagnosed as a whole for drift, quality and attributions; the
labelled rows (``labelled``: often the older part of the window, since labels
arrive late) are used only for concept drift and the slices, and the notes say
how many there were. The verdict is the highest score if it reaches 0.3, else
"no clear cause"; a tie goes to the data-quality break, which explains the
rest.
SHAP attributions (the ``shap`` library: TreeExplainer for tree ensembles,
LinearExplainer for linear models) compare which features drive the
predictions on the window vs the reference; models with neither get no
attributions rather than a slow model-agnostic run, and the report says so.
Slices (worst first) come from the labelled window when labels exist.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from keel.monitoring.drift import DriftReport, detect_drift
from keel.monitoring.estimation import CONCEPT_MIN_GAP, ConfidenceEstimator
from keel.monitoring.performance import SliceResult, classification_metrics, slice_metrics
from keel.monitoring.profile import ReferenceProfile
from keel.monitoring.quality import QualityReport, QualityThresholds, check_quality
from keel.monitoring.stats.correction import Correction
from keel.registry.signature import validate_frame

__all__ = ["Attribution", "Diagnosis", "diagnose"]

log = logging.getLogger("keel.monitoring")

Cause = Literal["data-quality break", "upstream staleness", "data drift", "concept drift"]
VERDICT_MIN = 0.3
SHAP_ROWS = 300
#: Accuracy gap (expected − realised) at which concept drift scores 1.
CONCEPT_FULL_GAP = 0.10
#: Share of the model's attention on drifted features that fully explains a bad window.
DRIFT_ATTENTION = 0.2


@dataclass(frozen=True, slots=True)
class Attribution:
    """How much a feature drives predictions on the reference vs the window (mean |SHAP|)."""

    feature: str
    reference: float
    current: float

    @property
    def change(self) -> float:
        """Current minus reference."""
        return self.current - self.reference


@dataclass
class Diagnosis:
    """Scores per cause, the verdict, and the evidence a person can check."""

    verdict: Cause | Literal["no clear cause"]
    scores: dict[str, float | None]
    evidence: list[str]
    attributions: list[Attribution] = field(default_factory=list)
    slices: list[SliceResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "verdict": self.verdict,
            "scores": self.scores,
            "evidence": self.evidence,
            "attributions": [
                {"feature": a.feature, "reference": a.reference, "current": a.current}
                for a in self.attributions
            ],
            "slices": [
                {
                    "column": s.column,
                    "value": str(s.value),
                    "n": s.n,
                    "score": s.score,
                    "gap": s.gap,
                }
                for s in self.slices
            ],
            "notes": self.notes,
        }


def diagnose(
    model: Any,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    features: Sequence[str],
    *,
    reference_labels: Sequence[Any] | None = None,
    window_labels: Sequence[Any] | None = None,
    labelled: tuple[pd.DataFrame, Sequence[Any]] | None = None,
    calibration: tuple[pd.DataFrame, Sequence[Any]] | None = None,
    freshness: Mapping[str, tuple[float, float]] | None = None,
    slice_by: Sequence[str] = (),
    quality: QualityThresholds | None = None,
    correction: Correction = "bh",
    alpha: float = 0.01,
) -> Diagnosis:
    """Score the causes for a bad ``window`` of a binary classifier's inputs (see module doc).

    ``model`` needs ``predict_proba`` (a keel-loaded model or the estimator itself).
    Concept drift is judged against the confidence estimate, calibrated on
    ``calibration`` (held-out rows and their labels: a model is over-confident on its
    training data) or else on the reference and ``reference_labels``. The realised
    side and the slices come from ``labelled`` (rows with labels, usually a subset of
    the window) or, when every window row has one, ``window_labels``. ``quality``,
    ``correction`` and ``alpha`` are the monitor's own settings.
    """
    notes: list[str] = []
    evidence: list[str] = []
    columns = list(features)
    if labelled is None and window_labels is not None:
        labelled = (window, window_labels)
    elif labelled is not None:
        notes.append(
            f"drift and quality: all {len(window)} rows of the window; concept drift and "
            f"slices: the {len(labelled[0])} rows labelled so far"
        )
    profile = ReferenceProfile.from_frame(reference[columns])
    report = check_quality(profile, window[[c for c in columns if c in window.columns]], quality)
    drift = detect_drift(profile, window, features=columns, correction=correction)
    attributions = _attributions(model, reference[columns], window, columns, notes)
    scores: dict[str, float | None] = {
        "data-quality break": _quality_score(report, evidence),
        "upstream staleness": _staleness_score(freshness or {}, evidence),
        "data drift": _drift_score(drift, _broken(report), attributions, evidence),
        "concept drift": _concept_score(
            model, calibration or (reference, reference_labels), labelled, columns, alpha, evidence
        ),
    }
    if scores["concept drift"] is None:
        notes.append("concept drift not scored: needs labels for the reference and the window")
    slices: list[SliceResult] = []
    if labelled is not None and slice_by:
        slices = _slices(model, labelled[0], columns, labelled[1], slice_by)
    known = {k: v for k, v in scores.items() if v is not None}
    # max keeps the first of equal scores: a quality break (listed first) explains drift.
    best = max(known, key=lambda k: known[k])
    verdict = best if known[best] >= VERDICT_MIN else "no clear cause"
    return Diagnosis(verdict, scores, evidence, attributions, slices[:10], notes)  # type: ignore[arg-type]


def _quality_score(quality: QualityReport, evidence: list[str]) -> float:
    errors = [f for f in quality.findings if f.severity == "error"]
    for finding in errors:
        evidence.append(f"data quality: {finding.message}")
    if errors:
        return 1.0
    # Warnings (values out of the reference range, new categories) are how drift shows up
    # in the data; alone they are weak evidence of a broken pipeline.
    return 0.2 if quality.findings else 0.0


def _staleness_score(freshness: Mapping[str, tuple[float, float]], evidence: list[str]) -> float:
    worst = 0.0
    for source, (age_s, sla_s) in freshness.items():
        if sla_s > 0 and age_s > sla_s:
            evidence.append(
                f"upstream: {source} is {age_s / 3600:.1f} h old, SLA {sla_s / 3600:.1f} h"
            )
            worst = max(worst, min(1.0, (age_s - sla_s) / sla_s))
    return worst


def _broken(quality: QualityReport) -> set[str]:
    """Features with a data-quality error."""
    return {f.feature for f in quality.findings if f.severity == "error" and f.feature}


def _drift_score(
    drift: DriftReport, broken: set[str], attributions: list[Attribution], evidence: list[str]
) -> float:
    drifted = set(drift.drifted) - broken
    for name in drift.drifted:
        if name in broken:
            evidence.append(f"data drift: {name} moved because it is broken (data quality)")
            continue
        item = drift.get(name)
        if item.adjusted_pvalue is not None:
            numbers = (
                f"{item.test} {item.statistic:.3g}, p {item.adjusted_pvalue:.2g} < {item.threshold}"
            )
        else:
            numbers = f"{item.test} {item.statistic:.3g} ≥ {item.threshold}"
        evidence.append(f"data drift: {name} ({numbers})")
    if not drift.features:
        return 0.0
    if attributions:
        total = sum(a.reference for a in attributions)
        if total > 0:
            share = sum(a.reference for a in attributions if a.feature in drifted) / total
            return float(min(1.0, share / DRIFT_ATTENTION))
    return min(1.0, len(drifted) / len(drift.features) / DRIFT_ATTENTION)


def _concept_score(
    model: Any,
    calibration: tuple[pd.DataFrame, Sequence[Any] | None],
    labelled: tuple[pd.DataFrame, Sequence[Any]] | None,
    columns: list[str],
    alpha: float,
    evidence: list[str],
) -> float | None:
    reference, reference_labels = calibration
    if reference_labels is None or labelled is None:
        return None
    rows, labels = labelled
    ref_scores = np.asarray(model.predict_proba(model_input(model, reference, columns)))[:, -1]
    scores = np.asarray(model.predict_proba(model_input(model, rows, columns)))[:, -1]
    estimator = ConfidenceEstimator().fit(np.asarray(reference_labels), ref_scores)
    check = estimator.concept_drift(np.asarray(labels), scores, alpha=alpha)
    test = check.test
    if not check.is_drift:
        return 0.0
    evidence.append(
        f"concept drift: accuracy {test.realised:.3f} on {test.n} labelled rows vs "
        f"{test.expected:.3f} expected from the model's confidence on the same rows "
        f"(p {test.pvalue:.2g} < {alpha})"
    )
    span = CONCEPT_FULL_GAP - CONCEPT_MIN_GAP
    return float(0.3 + 0.7 * np.clip((test.gap - CONCEPT_MIN_GAP) / span, 0.0, 1.0))


def _attributions(
    model: Any,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    columns: list[str],
    notes: list[str],
) -> list[Attribution]:
    try:
        import shap
    except ImportError:
        notes.append("no SHAP attributions: pip install 'keelml[explain]'")
        return []
    native = getattr(model, "native", model)
    ref = model_input(model, reference, columns).sample(
        min(len(reference), SHAP_ROWS), random_state=0
    )
    cur = model_input(model, window, columns).sample(min(len(window), SHAP_ROWS), random_state=0)
    try:
        if _is_tree(native):
            explainer: Any = shap.TreeExplainer(native)
        elif hasattr(native, "coef_"):
            explainer = shap.LinearExplainer(native, ref)
        else:
            notes.append(
                f"no SHAP attributions: no fast explainer for {type(native).__name__} "
                "(tree ensembles and linear models have one)"
            )
            return []
        ref_values = _positive_class(explainer(ref).values)
        cur_values = _positive_class(explainer(cur).values)
    except Exception as exc:  # an explainer that cannot handle this model must not fail diagnosis
        log.warning("SHAP failed: %s", exc)
        notes.append(f"no SHAP attributions: {exc}")
        return []
    items = [
        Attribution(
            name, float(np.abs(ref_values[:, j]).mean()), float(np.abs(cur_values[:, j]).mean())
        )
        for j, name in enumerate(columns)
    ]
    return sorted(items, key=lambda a: -abs(a.change))


def model_input(model: Any, frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The rows as the model expects them: coerced to its signature when it has one.

    Logged predictions hold categories as plain strings; a model trained on pandas
    categoricals (LightGBM) needs them back as ``category`` columns.
    """
    signature = getattr(model, "signature", None)
    if not signature:
        return frame[list(columns)]
    names = [c["name"] for c in signature.get("inputs", [])]
    return validate_frame(frame[names], signature)


def _is_tree(native: Any) -> bool:
    name = type(native).__module__ + "." + type(native).__name__
    return any(k in name for k in ("lightgbm", "xgboost", "Forest", "Tree", "GradientBoosting"))


def _positive_class(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    return array[:, :, -1] if array.ndim == 3 else array


def _slices(
    model: Any,
    window: pd.DataFrame,
    columns: list[str],
    labels: Sequence[Any],
    slice_by: Sequence[str],
) -> list[SliceResult]:
    predicted = model.predict(model_input(model, window, columns))
    frame = window.assign(_label=np.asarray(labels), _pred=np.asarray(predicted))
    return slice_metrics(
        frame,
        by=list(slice_by),
        metric="accuracy",
        compute=lambda part: classification_metrics(part["_label"], part["_pred"]),
    )
