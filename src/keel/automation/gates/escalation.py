"""Automatic escalation (R-CICD-10): passing gates whose numbers are anomalous wait for a
human even when the retraining does not require approval.

A challenger far better than a champion that still works, a perfect holdout score, a huge
train/holdout gap or a tiny holdout are more often a bug (leakage, a broken split, a label
join gone wrong) than a breakthrough; promoting them unattended is the failure mode human
checkpoints exist for. Pure: a report in, the reasons out (empty: nothing anomalous).
"""

from __future__ import annotations

from keel.automation.gates.policy import EscalationPolicy
from keel.automation.gates.result import GateResult, ValidationReport

__all__ = ["escalation_reasons"]


def _computed(report: ValidationReport, name: str) -> GateResult | None:
    try:
        gate = report.gate(name)
    except KeyError:
        return None
    return gate if gate.status != "skipped" and gate.value is not None else None


def escalation_reasons(report: ValidationReport) -> list[str]:
    """Why ``report``'s results need a human, one sentence each (by its policy's
    ``escalation`` section; none when that section is disabled)."""
    policy = EscalationPolicy.model_validate(report.policy.get("escalation") or {})
    if not policy.enabled:
        return []
    reasons: list[str] = []
    if report.holdout_rows < policy.min_holdout_rows:
        reasons.append(
            f"holdout has {report.holdout_rows} rows (< {policy.min_holdout_rows}): "
            "too few to trust the gates"
        )
    margin = _computed(report, "margin")
    if margin is not None:
        delta, old = margin.numbers.get("delta"), margin.numbers.get("champion_auc")
        if delta is not None and old is not None:
            if delta > policy.max_improvement and old >= policy.champion_ok_auc:
                reasons.append(
                    f"challenger AUC better than the champion's {old:.4f} by {delta:+.4f} "
                    f"(> {policy.max_improvement:g}): implausible gain, check for leakage"
                )
    auc = _computed(report, "floor") or margin
    if auc is not None and auc.value is not None and auc.value >= policy.max_auc:
        reasons.append(
            f"challenger holdout AUC {auc.value:.4f} ≥ {policy.max_auc:g}: "
            "suspiciously perfect, check for leakage"
        )
    overfit = _computed(report, "overfit")
    if overfit is not None and overfit.value is not None and overfit.value > policy.max_gap:
        reasons.append(
            f"train/holdout AUC gap {overfit.value:.4f} > {policy.max_gap:g}: overfitting "
            "or a broken split"
        )
    return reasons
