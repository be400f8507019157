"""Names used across monitoring, kept free of numpy/scipy imports.

The SDK's monitor models (imported by ``import keel``) need these names; the
statistics that give them meaning import scipy, which costs over a second.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "Correction",
    "FeatureKind",
    "PerformanceMetric",
    "TestName",
]

FeatureKind = Literal["numeric", "categorical"]
TestName = Literal["ks", "wasserstein", "chi2", "jensen_shannon", "psi", "kl_divergence"]
Correction = Literal["none", "bonferroni", "bh"]
#: Metrics a monitor can hold to its reference level (each has a standard error in
#: ``keel.monitoring.stats.drop``); accuracy … roc_auc for classifiers, mae and rmse for regressors.
PerformanceMetric = Literal["accuracy", "precision", "recall", "roc_auc", "mae", "rmse"]
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "roc_auc")
REGRESSION_METRICS = ("mae", "rmse")
