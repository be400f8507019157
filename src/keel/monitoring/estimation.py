"""Performance estimated before labels arrive (confidence-based, in the spirit of NannyML's CBPE).

If a binary classifier's scores are calibrated — among rows scored 0.8, 80%
are positive — then each row's expected contribution to the confusion
matrix is known without its label: a row predicted positive with calibrated
probability ``p`` adds ``p`` to the expected true positives and ``1 − p`` to
the false positives. Summing gives expected accuracy, precision, recall and
F1; weighting each row as a positive with weight ``p`` and a negative with
weight ``1 − p`` gives the expected ROC AUC.

Scores are first calibrated on reference data whose labels are known
(isotonic regression), so a model that is confident but not calibrated is
estimated correctly. The assumption that breaks the estimate is concept
drift (P(y | x) changes): the estimate then stays where it was while
realised performance falls — which is exactly why comparing the two once
labels land is a concept-drift signal.

That comparison is made on the *same rows* — the labelled ones — because the
window's other rows are a different (usually newer) population, and it is a
test, not a fixed gap: under calibration the number of correctly classified
labelled rows is Poisson-binomial (:mod:`keel.monitoring.stats.expected`), so
30 labels need a much larger gap than 3,000 before concept drift is called.
The calibration's own uncertainty (it was fitted on a finite held-out set) is
part of the test's variance, and a gap must also exceed ``CONCEPT_MIN_GAP``:
under covariate shift the estimate itself errs by a few points (a model's
calibration differs between segments), which a test on thousands of labels
would otherwise report as concept drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from keel.errors import InvalidInput
from keel.monitoring.stats.expected import ExpectedAccuracyTest, expected_accuracy_test

__all__ = ["CONCEPT_MIN_GAP", "ConceptDriftCheck", "ConfidenceEstimator"]

#: Accuracy gap (expected − realised) below which concept drift is never called: the
#: estimate's own error under covariate shift (0.03–0.045 with 90% of a churn window
#: from one contract type, tests/monitoring/test_diagnosis.py).
CONCEPT_MIN_GAP = 0.03


@dataclass(frozen=True, slots=True)
class ConceptDriftCheck:
    """Realised accuracy of labelled rows against what their calibrated scores expect."""

    test: ExpectedAccuracyTest
    alpha: float

    @property
    def is_drift(self) -> bool:
        """Significantly below the expectation at ``alpha`` and by more than the minimum gap."""
        return self.test.is_below(self.alpha) and self.test.gap > CONCEPT_MIN_GAP

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "n": self.test.n,
            "expected_accuracy": self.test.expected,
            "realised_accuracy": self.test.realised,
            "gap": self.test.gap,
            "pvalue": self.test.pvalue,
            "method": self.test.method,
            "alpha": self.alpha,
            "min_gap": CONCEPT_MIN_GAP,
            "drift": self.is_drift,
        }


@dataclass
class ConfidenceEstimator:
    """Calibrate on labelled reference scores, then estimate metrics of unlabelled windows."""

    threshold: float = 0.5
    n_calibration: int = 0
    _calibrator: IsotonicRegression | None = None

    def fit(
        self, y_true: Sequence[int] | NDArray[Any], y_score: Sequence[float] | NDArray[Any]
    ) -> ConfidenceEstimator:
        """Learn the score → probability map on reference rows (labels 0/1)."""
        labels = np.asarray(y_true)
        scores = _scores(y_score)
        if labels.shape != scores.shape:
            raise InvalidInput(
                f"y_true: {labels.size} labels for {scores.size} scores", field="y_true"
            )
        if not np.isin(labels, (0, 1)).all() or np.unique(labels).size != 2:
            raise InvalidInput("y_true: need binary 0/1 labels with both classes", field="y_true")
        calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self._calibrator = calibrator.fit(scores, labels.astype(np.float64))
        self.n_calibration = int(scores.size)
        return self

    def calibrated(self, y_score: Sequence[float] | NDArray[Any]) -> NDArray[np.float64]:
        """Calibrated probabilities of the positive class."""
        if self._calibrator is None:
            raise InvalidInput("estimator: call fit() on reference data first", field="estimator")
        out: NDArray[np.float64] = np.asarray(
            self._calibrator.predict(_scores(y_score)), dtype=np.float64
        )
        return out

    def expected_correct(self, y_score: Sequence[float] | NDArray[Any]) -> NDArray[np.float64]:
        """Each row's calibrated probability that its prediction (score ≥ threshold) is right."""
        scores = _scores(y_score)
        p = self.calibrated(scores)
        out: NDArray[np.float64] = np.where(scores >= self.threshold, p, 1 - p)
        return out

    def concept_drift(
        self,
        y_true: Sequence[int] | NDArray[Any],
        y_score: Sequence[float] | NDArray[Any],
        *,
        alpha: float = 0.01,
    ) -> ConceptDriftCheck:
        """Test the labelled rows' realised accuracy against their expected accuracy.

        ``y_true`` are the 0/1 labels of the rows scored ``y_score``; the same
        threshold decides the prediction on both sides.
        """
        labels = np.asarray(y_true, dtype=np.float64)
        scores = _scores(y_score)
        if labels.shape != scores.shape or not np.isin(labels, (0.0, 1.0)).all():
            raise InvalidInput("y_true: need one 0/1 label per score", field="y_true")
        correct = (scores >= self.threshold) == (labels == 1)
        expected = self.expected_correct(scores)
        mean = float(expected.mean())
        # The calibration was fitted on n_calibration rows: its mean is uncertain by about
        # a binomial standard error at the window's expected accuracy.
        se = float(np.sqrt(mean * (1 - mean) / self.n_calibration)) if self.n_calibration else 0.0
        test = expected_accuracy_test(correct, expected, expected_se=se)
        return ConceptDriftCheck(test, alpha)

    def estimate(self, y_score: Sequence[float] | NDArray[Any]) -> dict[str, float | None]:
        """Expected accuracy, precision, recall, F1 and ROC AUC of a window without labels."""
        scores = _scores(y_score)
        p = self.calibrated(scores)
        predicted = scores >= self.threshold
        tp = float(p[predicted].sum())
        fp = float((1 - p[predicted]).sum())
        fn = float(p[~predicted].sum())
        tn = float((1 - p[~predicted]).sum())
        precision = tp / (tp + fp) if tp + fp > 0 else 0.0
        recall = tp / (tp + fn) if tp + fn > 0 else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        both = p.sum() > 0 and (1 - p).sum() > 0
        auc = (
            float(
                roc_auc_score(
                    np.r_[np.ones(p.size), np.zeros(p.size)],
                    np.r_[scores, scores],
                    sample_weight=np.r_[p, 1 - p],
                )
            )
            if both
            else None
        )
        return {
            "n": float(scores.size),
            "accuracy": (tp + tn) / scores.size,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "roc_auc": auc,
        }


def _scores(values: Sequence[float] | NDArray[Any]) -> NDArray[np.float64]:
    scores = np.asarray(values, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise InvalidInput("y_score: need a non-empty 1-D array of scores", field="y_score")
    if np.isnan(scores).any() or (scores < 0).any() or (scores > 1).any():
        raise InvalidInput("y_score: probabilities must lie in [0, 1]", field="y_score")
    return scores
