"""Label sanity of an incremental batch (R-TRN-09): is it plausible, or noisy/adversarial?

Two checks, each with an effect size *and* a significance level, so a small batch does
not trip on noise and a large one does not trip on a negligible difference:

- **positive-rate shift**: the batch's positive rate against the recent window's
  (two-proportion z-test, :func:`keel.deploy.abstats.ztest_proportions`);
- **label flips**: on rows where the champion is confident, how often the labels agree
  with it against what its own probabilities expect (Poisson-binomial test,
  :func:`keel.monitoring.stats.expected.expected_accuracy_test`). A label-flip attack
  makes confident predictions "wrong" far more often than a calibrated model allows.

A genuine, abrupt concept change looks the same as a flip attack to the second check: it
is quarantined too, and the decision says so; a full retraining on rows after the change
point (``mode: full``) is the remedy a person chooses. Pure functions; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keel.automation.retrain.incremental_spec import GuardSpec

__all__ = ["GuardCheck", "GuardReport", "check_labels"]


@dataclass(frozen=True)
class GuardCheck:
    """One check: passed, skipped (with the reason) or failed, and its numbers."""

    name: str
    passed: bool
    skipped: bool
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for a decision's details."""
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "reason": self.reason,
            **self.numbers,
        }


@dataclass(frozen=True)
class GuardReport:
    """Every check of a batch; ``passed`` when none failed."""

    checks: list[GuardCheck]

    @property
    def passed(self) -> bool:
        """No check failed (skipped ones do not fail)."""
        return all(c.passed for c in self.checks)

    def summary(self) -> str:
        """The failing checks' reasons, or ``labels plausible`` with the skipped ones."""
        failed = [c.reason for c in self.checks if not c.passed]
        if failed:
            return "; ".join(failed)
        skipped = [f"{c.name} skipped" for c in self.checks if c.skipped]
        return "labels plausible" + (f" ({', '.join(skipped)})" if skipped else "")

    def as_dict(self) -> dict[str, Any]:
        """``{"passed": ..., "checks": [...]}`` for decisions and results."""
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}


def check_labels(
    batch: np.ndarray,
    recent: np.ndarray | None,
    champion_scores: np.ndarray | None,
    spec: GuardSpec,
) -> GuardReport:
    """Check a batch's 0/1 labels (``batch``) against the recent window's (``recent``) and
    the champion's positive-class probabilities on the batch rows (``champion_scores``,
    aligned with ``batch``; None without a champion)."""
    if not spec.enabled:
        return GuardReport([GuardCheck("label_guard", True, True, "disabled")])
    y = np.asarray(batch, dtype=np.int64)
    return GuardReport([_rate_shift(y, recent, spec), _flips(y, champion_scores, spec)])


def _rate_shift(y: np.ndarray, recent: np.ndarray | None, spec: GuardSpec) -> GuardCheck:
    from keel.deploy.abstats import ztest_proportions

    name = "positive_rate_shift"
    n_recent = 0 if recent is None else int(len(recent))
    if recent is None or n_recent < spec.min_recent_rows:
        why = f"{n_recent} recent labels (< {spec.min_recent_rows}): no baseline"
        return GuardCheck(name, True, True, why, {"recent_rows": n_recent})
    if len(y) == 0:
        return GuardCheck(name, True, True, "empty batch", {"recent_rows": n_recent})
    old = np.asarray(recent, dtype=np.int64)
    test = ztest_proportions((int(old.sum()), n_recent), (int(y.sum()), len(y)))
    shift = test.difference
    failed = abs(shift) > spec.max_positive_rate_shift and test.pvalue < spec.alpha
    numbers = {
        "recent_rows": n_recent,
        "batch_rows": len(y),
        "recent_positive_rate": round(test.control, 6),
        "batch_positive_rate": round(test.treatment, 6),
        "shift": round(shift, 6),
        "max_shift": spec.max_positive_rate_shift,
        "pvalue": test.pvalue,
        "alpha": spec.alpha,
    }
    verdict = "beyond" if failed else "within"
    reason = (
        f"positive rate {test.treatment:.3f} vs {test.control:.3f} in the recent window "
        f"(shift {shift:+.3f}, p={test.pvalue:.2g}): {verdict} "
        f"±{spec.max_positive_rate_shift:g} at p<{spec.alpha:g}"
    )
    return GuardCheck(name, not failed, False, reason, numbers)


def _flips(y: np.ndarray, scores: np.ndarray | None, spec: GuardSpec) -> GuardCheck:
    from keel.monitoring.stats.expected import expected_accuracy_test

    name = "label_flips"
    if scores is None:
        return GuardCheck(name, True, True, "no champion to compare with")
    p = np.asarray(scores, dtype=np.float64)
    certainty = np.maximum(p, 1.0 - p)  # the probability of the champion's own class
    confident = certainty >= spec.confidence
    n = int(confident.sum())
    if n < spec.min_confident_rows:
        why = f"{n} confident rows (champion ≥ {spec.confidence:g}; < {spec.min_confident_rows})"
        return GuardCheck(name, True, True, why, {"confident_rows": n})
    agrees = (p[confident] >= 0.5).astype(np.int64) == y[confident]
    test = expected_accuracy_test(agrees, certainty[confident])
    failed = test.gap > spec.max_disagreement_excess and test.pvalue < spec.alpha
    numbers = {
        "confident_rows": n,
        "confidence": spec.confidence,
        "agreement": round(test.realised, 6),
        "expected_agreement": round(test.expected, 6),
        "disagreement_excess": round(test.gap, 6),
        "max_excess": spec.max_disagreement_excess,
        "pvalue": test.pvalue,
        "alpha": spec.alpha,
    }
    verdict = "implausible" if failed else "plausible"
    reason = (
        f"labels agree with the confident champion on {test.realised:.1%} of {n} rows, "
        f"{test.expected:.1%} expected (excess disagreement {test.gap:+.3f}, "
        f"p={test.pvalue:.2g}): {verdict}"
    )
    return GuardCheck(name, not failed, False, reason, numbers)
