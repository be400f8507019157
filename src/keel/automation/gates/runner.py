"""Run every validation gate of a policy on loaded models and frames; build the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel._models import now_ms
from keel.automation.gates.checks import (
    calibration_gate,
    floor_gate,
    label_problem,
    margin_gate,
    overfit_gate,
    slices_gate,
)
from keel.automation.gates.cost import optimal_threshold
from keel.automation.gates.distribution import equivalence_gate, skew_gate
from keel.automation.gates.explain import check_policy_features, direction_gate, importance_gate
from keel.automation.gates.fairness import fairness_gate
from keel.automation.gates.measure import (
    check_features,
    latency_gate,
    positive_scores,
    size_gate,
    stress_gate,
)
from keel.automation.gates.policy import GatePolicy
from keel.automation.gates.result import GateResult, ValidationReport, cannot_compute, skipped
from keel.automation.gates.runtime import warmup
from keel.errors import InvalidInput

__all__ = ["run_gates"]


def _labels(frame: pd.DataFrame, label: str, positive: Any) -> np.ndarray:
    values = frame[label]
    if values.isna().any():
        raise InvalidInput(
            f"label column {label!r} has {int(values.isna().sum())} missing values",
            field="label",
        )
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        hits = np.asarray(values.to_numpy() == positive)
    else:
        hits = np.asarray(values.astype(str).to_numpy() == str(positive))
    return hits.astype(np.int64)


def _score(model: Any, features: pd.DataFrame, positive: Any) -> tuple[np.ndarray | None, str]:
    """Scores, or None and why the model could not score these rows."""
    if len(features) == 0:
        return None, "the holdout is empty"
    try:
        return positive_scores(model, features, positive), ""
    except Exception as exc:  # the model's own failure is the gate's reason
        return None, f"the model raised {type(exc).__name__} on the holdout: {exc}"


class _Gates:
    """One validation: the inputs, scored once, and the gates in policy order."""

    def __init__(
        self,
        policy: GatePolicy,
        holdout: pd.DataFrame,
        label: str,
        positive: Any,
        challenger: Any,
        champion: Any | None,
    ) -> None:
        self.policy = policy
        self.holdout = holdout
        self.label = label
        self.features = check_features(holdout, label)
        self.y = _labels(holdout, label, positive) if len(holdout) else np.zeros(0, np.int64)
        self.positive = positive
        self.challenger = challenger
        self.champion = champion
        self.new, self.new_problem = _score(challenger, self.features, positive)
        self.old, self.old_problem = (
            _score(champion, self.features, positive) if champion is not None else (None, "")
        )

    @property
    def s_new(self) -> np.ndarray:
        """The challenger's scores (callers check :meth:`scored` first)."""
        assert self.new is not None
        return self.new

    @property
    def s_old(self) -> np.ndarray:
        """The champion's scores (callers check ``scored(..., champion=True)`` first)."""
        assert self.old is not None
        return self.old

    def scored(self, name: str, *, champion: bool = False) -> GateResult | None:
        """A failure when a needed model could not score the holdout (else None)."""
        problem = label_problem(self.y)
        if problem:
            return cannot_compute(name, problem, rows=int(self.y.size))
        if self.new is None:
            return cannot_compute(name, f"challenger: {self.new_problem}")
        if champion and self.old is None:
            return cannot_compute(name, f"champion: {self.old_problem}")
        return None


def _off(section: Any) -> bool:
    return not section.enabled


def run_gates(
    challenger: Any,
    holdout: pd.DataFrame,
    label: str,
    policy: GatePolicy | None = None,
    *,
    champion: Any | None = None,
    training: pd.DataFrame | None = None,
    serving: pd.DataFrame | None = None,
    challenger_name: str = "challenger",
    champion_name: str | None = None,
    size_bytes: int | None = None,
    signature: dict[str, Any] | None = None,
    positive: Any = 1,
    clock: Callable[[], int] = now_ms,
) -> ValidationReport:
    """Validate ``challenger`` (anything with ``predict_proba``) against ``champion``.

    ``holdout`` holds the features and the ``label`` column (``positive`` is the positive
    class). ``training`` (features + label) enables the train/holdout gap and the skew
    gate, whose serving side is ``serving`` (default: the holdout's features).
    ``size_bytes`` and ``signature`` come from the registered version. InvalidInput names
    ``label`` when that column is absent or has missing values; every other problem is a
    failing gate with its reason.
    """
    policy = policy or GatePolicy()
    features = check_features(holdout, label)
    check_policy_features(policy.importance, policy.shap_direction, features)
    runtime = policy.runtime if policy.runtime is not None and policy.runtime.enabled else None
    # warm-up is timed first: every other gate below calls the model and warms it
    warm = (
        warmup(challenger, features, runtime.warmup)
        if runtime is not None and runtime.warmup.enabled
        else None
    )
    g = _Gates(policy, holdout, label, positive, challenger, champion)
    threshold, cost = policy.cost.threshold, None
    if policy.cost.is_costed and g.new is not None:
        curve = optimal_threshold(
            g.y, g.new, policy.cost.cost_fp or 0.0, policy.cost.cost_fn or 0.0
        )
        threshold, cost = curve.threshold, curve.to_dict()
    gates: list[GateResult] = []
    slices_table: list[dict[str, Any]] = []
    no_champion = "no champion to compare with"

    # margin (R-TRN-05)
    if _off(policy.margin):
        gates.append(skipped("margin", "disabled by policy"))
    elif champion is None:
        gates.append(skipped("margin", no_champion))
    else:
        gates.append(
            g.scored("margin", champion=True) or margin_gate(g.y, g.s_new, g.s_old, policy.margin)
        )
    # floor (R-TRN-06)
    if _off(policy.floor):
        gates.append(skipped("floor", "disabled by policy"))
    else:
        gates.append(g.scored("floor") or floor_gate(g.y, g.s_new, policy.floor))
    gates.append(_overfit(g, training))
    # slices
    if _off(policy.slices):
        gates.append(skipped("slices", "disabled by policy"))
    elif not policy.slices.columns:
        gates.append(skipped("slices", "no slice columns declared (slices.columns)"))
    elif champion is None:
        gates.append(skipped("slices", no_champion))
    else:
        failed = g.scored("slices", champion=True)
        if failed is None:
            failed, slices_table = slices_gate(holdout, label, g.s_new, g.s_old, policy.slices)
        gates.append(failed)
    # calibration
    if _off(policy.calibration):
        gates.append(skipped("calibration", "disabled by policy"))
    elif champion is None and policy.calibration.max_brier is None:
        gates.append(skipped("calibration", f"{no_champion} and no calibration.max_brier"))
    else:
        gates.append(
            g.scored("calibration", champion=champion is not None)
            or calibration_gate(g.y, g.s_new, g.s_old, policy.calibration)
        )
    # fairness (R-GOV-02)
    if _off(policy.fairness):
        gates.append(skipped("fairness", "disabled by policy"))
    elif not policy.fairness.sensitive_columns:
        gates.append(
            skipped("fairness", "no sensitive columns declared (fairness.sensitive_columns)")
        )
    else:
        gates.append(
            g.scored("fairness")
            or fairness_gate(holdout, g.y, (g.s_new >= threshold).astype(np.int64), policy.fairness)
        )
    gates.append(_skew(g, training, serving))
    # equivalence (R-CICD-06)
    if _off(policy.equivalence):
        gates.append(skipped("equivalence", "disabled by policy"))
    elif champion is None:
        gates.append(skipped("equivalence", no_champion))
    else:
        gates.append(
            g.scored("equivalence", champion=True)
            or equivalence_gate(g.s_new, g.s_old, policy.equivalence)
        )
    # latency, size, stress: properties of the challenger alone
    if _off(policy.latency):
        gates.append(skipped("latency", "disabled by policy"))
    else:
        gates.append(
            cannot_compute("latency", g.new_problem)
            if g.new is None
            else latency_gate(challenger, g.features, policy.latency)
        )
    gates.append(
        skipped("size", "disabled by policy")
        if _off(policy.size)
        else size_gate(size_bytes, policy.size)
    )
    if _off(policy.stress):
        gates.append(skipped("stress", "disabled by policy"))
    else:
        reference = None if training is None else training.drop(columns=[label], errors="ignore")
        gates.append(stress_gate(challenger, g.features, reference, signature, policy.stress))
    gates += _explain(g)
    if runtime is not None:
        from keel.automation.gates.runtime_group import runtime_gates

        gates += runtime_gates(g, runtime, training, signature, threshold, warm)
    return ValidationReport(
        challenger=challenger_name,
        champion=champion_name,
        holdout_rows=len(holdout),
        label=label,
        gates=gates,
        strict=policy.strict,
        decision_threshold=threshold,
        cost=cost,
        slices=slices_table,
        policy=policy.model_dump(mode="json"),
        created_at_ms=clock(),
    )


def _overfit(g: _Gates, training: pd.DataFrame | None) -> GateResult:
    if _off(g.policy.overfit):
        return skipped("overfit", "disabled by policy")
    if training is None:
        return skipped("overfit", "no training data given")
    failed = g.scored("overfit")
    if failed:
        return failed
    if g.label not in training.columns:
        return cannot_compute("overfit", f"training data has no label column {g.label!r}")
    train_features = training.drop(columns=[g.label])
    y_train = _labels(training, g.label, g.positive) if len(training) else np.zeros(0, np.int64)
    scores, problem = _score(g.challenger, train_features, g.positive)
    if scores is None:
        return cannot_compute("overfit", f"training data: {problem.replace('holdout', 'data')}")
    return overfit_gate(y_train, scores, g.y, g.s_new, g.policy.overfit)


def _skew(g: _Gates, training: pd.DataFrame | None, serving: pd.DataFrame | None) -> GateResult:
    if _off(g.policy.skew):
        return skipped("skew", "disabled by policy")
    if training is None:
        return skipped("skew", "no training data given")
    current = g.features if serving is None else serving
    return skew_gate(training, current, g.policy.skew, exclude=[g.label])


def _explain(g: _Gates) -> list[GateResult]:
    """The opt-in explanation gates (R-CICD-05), when the policy has their sections."""
    gates: list[GateResult] = []
    importance, direction = g.policy.importance, g.policy.shap_direction
    if importance is not None:
        if not importance.enabled:
            gates.append(skipped("importance", "disabled by policy"))
        else:
            gates.append(
                g.scored("importance")
                or importance_gate(g.challenger, g.features, g.y, importance, g.positive)
            )
    if direction is not None:
        if not direction.enabled:
            gates.append(skipped("shap_direction", "disabled by policy"))
        else:
            gates.append(
                g.scored("shap_direction")
                or direction_gate(g.challenger, g.features, direction, g.positive)
            )
    return gates
