"""Drift statistics: pure functions, numpy/scipy in, numbers out.

Every function takes a reference and a current sample, one column (1-D) or
several (2-D, rows × features), and returns a :class:`StatResult` with
``.statistic`` and, for hypothesis tests, ``.pvalue``. NaNs are ignored.
"""

from keel.monitoring.stats._result import StatResult
from keel.monitoring.stats.chi2 import chi2
from keel.monitoring.stats.choice import TestChoice, choose_test
from keel.monitoring.stats.correction import adjust_pvalues
from keel.monitoring.stats.divergence import jensen_shannon, kl_divergence
from keel.monitoring.stats.ks import ks
from keel.monitoring.stats.psi import psi
from keel.monitoring.stats.wasserstein import wasserstein

__all__ = [
    "StatResult",
    "TestChoice",
    "adjust_pvalues",
    "chi2",
    "choose_test",
    "jensen_shannon",
    "kl_divergence",
    "ks",
    "psi",
    "wasserstein",
]
