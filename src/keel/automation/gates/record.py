"""How a validation report is kept: the run's metrics and tags, the version's tags and the
decision-log entry. Pure (the SDK writes them); one place so every writer agrees.

The report itself (JSON and Markdown) is an artifact of a *validation run* in the
``keel-validations`` experiment: the version's own training run has ended and its artifacts
are immutable (#15.5), and no migration is needed. The version carries tags pointing at it.
"""

from __future__ import annotations

from typing import Any

from keel.automation.gates.escalation import escalation_reasons
from keel.automation.gates.result import ValidationReport

__all__ = [
    "EXPERIMENT",
    "REPORT_JSON",
    "REPORT_MD",
    "TAG_PREFIX",
    "decision_details",
    "run_metrics",
    "version_tags",
]

EXPERIMENT = "keel-validations"
REPORT_JSON = "validation/report.json"
REPORT_MD = "validation/report.md"
TAG_PREFIX = "keel.validation."


def run_metrics(report: ValidationReport) -> dict[str, float]:
    """Each computed gate's headline value (``gate.<name>``), ``gate.<name>.passed`` (0/1),
    ``validation.passed`` and the decision threshold."""
    metrics: dict[str, float] = {
        "validation.passed": float(report.passed),
        "validation.decision_threshold": report.decision_threshold,
    }
    for gate in report.gates:
        if gate.status == "skipped":
            continue
        metrics[f"gate.{gate.name}.passed"] = float(gate.status == "pass")
        if gate.value is not None:
            metrics[f"gate.{gate.name}"] = float(gate.value)
    return metrics


def version_tags(report: ValidationReport, run_id: str) -> dict[str, str]:
    """Tags set on the challenger version: verdict, where the report is, one-line summary."""
    return {
        f"{TAG_PREFIX}status": "passed" if report.passed else "failed",
        f"{TAG_PREFIX}run_id": run_id,
        f"{TAG_PREFIX}report": REPORT_JSON,
        f"{TAG_PREFIX}against": report.champion or "",
        f"{TAG_PREFIX}failed_gates": ",".join(g.name for g in report.failed),
        f"{TAG_PREFIX}at_ms": str(report.created_at_ms),
    }


def decision_details(report: ValidationReport, run_id: str) -> dict[str, Any]:
    """The numbers a ``gate`` decision records: each gate's status, value, threshold, reason,
    and ``escalation``: why the results need a human (R-CICD-10; empty when they do not)."""
    return {
        "passed": report.passed,
        "escalation": escalation_reasons(report),
        "challenger": report.challenger,
        "champion": report.champion,
        "holdout_rows": report.holdout_rows,
        "decision_threshold": report.decision_threshold,
        "run_id": run_id,
        "gates": {
            g.name: {
                "status": g.status,
                "value": g.value,
                "threshold": g.threshold,
                "reason": g.reason,
            }
            for g in report.gates
        },
    }
