"""Arm differences through keel's A/B tests: Welch on metric estimates, Holm's adjustment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from keel.deploy.armdiff import compare_errors, compare_metric, holm
from keel.deploy.verdict import MetricEstimate


def test_compare_metric_is_welch_on_the_estimates_summaries() -> None:
    a, b = MetricEstimate(0.71, 0.02, 400), MetricEstimate(0.75, 0.03, 150)
    found = compare_metric(a, b)
    assert found is not None
    expected = sps.ttest_ind_from_stats(
        0.75, 0.03 * math.sqrt(150), 150, 0.71, 0.02 * math.sqrt(400), 400, equal_var=False
    )
    assert found.statistic == pytest.approx(expected.statistic, abs=1e-9)
    assert found.pvalue == pytest.approx(expected.pvalue, abs=1e-9)
    assert found.std_error == pytest.approx(math.sqrt(0.02**2 + 0.03**2), abs=1e-12)
    assert compare_metric(a, None) is None


def test_holm_equals_statsmodels() -> None:
    pvalues = list(np.random.default_rng(3).uniform(0, 0.2, size=30)) + [0.0, 1.0]
    expected = multipletests(pvalues, method="holm")[1]
    assert holm(pvalues) == pytest.approx(list(expected), abs=1e-12)
    assert holm([]) == []

    assert compare_errors((0, 0), (1, 10)) is None
