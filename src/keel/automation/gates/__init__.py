"""Validation gates: may a challenger replace the champion? Each gate passes or fails with
its numbers, threshold and a one-line reason; the report goes on the model version.

``run_gates`` runs a :class:`GatePolicy` on loaded models and frames; the statistics
(``checks``, ``fairness``, ``distribution``, ``cost``) are pure, ``measure`` runs the
model, ``store`` writes the report to the registry. ``keel validate`` and
``Client.validate_model`` are the front doors.
"""

from keel.automation.gates.markdown import to_markdown
from keel.automation.gates.policy import GatePolicy, load_policy, parse_policy
from keel.automation.gates.result import GateResult, ValidationReport
from keel.automation.gates.runner import run_gates

__all__ = [
    "GatePolicy",
    "GateResult",
    "ValidationReport",
    "load_policy",
    "parse_policy",
    "run_gates",
    "to_markdown",
]
