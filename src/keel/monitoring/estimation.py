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

__all__ = ["ConfidenceEstimator"]


@dataclass
class ConfidenceEstimator:
    """Calibrate on labelled reference scores, then estimate metrics of unlabelled windows."""

    threshold: float = 0.5
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
        return self

    def calibrated(self, y_score: Sequence[float] | NDArray[Any]) -> NDArray[np.float64]:
        """Calibrated probabilities of the positive class."""
        if self._calibrator is None:
            raise InvalidInput("estimator: call fit() on reference data first", field="estimator")
        out: NDArray[np.float64] = np.asarray(
            self._calibrator.predict(_scores(y_score)), dtype=np.float64
        )
        return out

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
