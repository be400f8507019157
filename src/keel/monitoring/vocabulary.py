"""Names used across monitoring, kept free of numpy/scipy imports.

The SDK's monitor models (imported by ``import keel``) need these names; the
statistics that give them meaning import scipy, which costs over a second.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Correction", "FeatureKind", "TestName"]

FeatureKind = Literal["numeric", "categorical"]
TestName = Literal["ks", "wasserstein", "chi2", "jensen_shannon", "psi", "kl_divergence"]
Correction = Literal["none", "bonferroni", "bh"]
