"""Skew statistics against scipy and hand computations; the gate; the prediction-log adapter."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from tests.features.conftest import account_frame, usage_frame

from keel.errors import InvalidInput, Unavailable
from keel.features import FeatureStore, compare_skew
from keel.monitoring.stats import ks, psi


def _one_feature(offline: object, served: object) -> object:
    report = compare_skew(pd.DataFrame({"x": offline}), pd.DataFrame({"x": served}))
    (feature,) = report.features
    return feature


def test_skew_psi_with_empty_bins_is_the_monitoring_psi() -> None:
    # Issue #15 item 25: skew.py clipped empty bins to 1e-4 without renormalising
    # (6.8082), the monitors renormalise (6.8069); one number now, everywhere.
    reference = np.arange(100, dtype=float)  # deciles: 10 values per bin
    current = np.concatenate([np.full(50, 5.0), np.full(50, 95.0)])  # bins 0 and 9 only
    eps = 1e-4
    ref = np.full(10, 0.1)
    cur = np.array([0.5] + [eps] * 8 + [0.5])
    cur = cur / cur.sum()  # the documented smoothing: empty cells → 1e-4, renormalised
    expected = float(np.sum((cur - ref) * np.log(cur / ref)))
    feature = _one_feature(reference, current)
    assert feature.psi == pytest.approx(expected, rel=1e-12)
    assert feature.psi == psi(reference, current).statistic
    assert feature.psi != pytest.approx(6.808228348909804, rel=1e-6)  # the old skew number


def test_skew_psi_unchanged_where_the_two_agreed() -> None:
    rng = np.random.default_rng(0)
    offline, served = rng.normal(size=500), rng.normal(0.3, 1.1, size=400)
    assert _one_feature(offline, served).psi == pytest.approx(0.09405741896580741, rel=1e-12)
    categorical = _one_feature(list("aabb"), list("aaab"))
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert categorical.psi == pytest.approx(expected, rel=1e-12)


def test_skew_ks_is_the_monitoring_ks() -> None:
    rng = np.random.default_rng(3)
    offline, served = rng.normal(size=12_000), rng.normal(0.05, 1, size=11_000)  # asymptotic
    feature = _one_feature(offline, served)
    expected = ks(offline, served)
    assert (feature.ks, feature.ks_pvalue) == (expected.statistic, expected.pvalue)
    reference = ks_2samp(offline, served)
    assert feature.ks == pytest.approx(reference.statistic, rel=1e-12)
    assert feature.ks_pvalue == pytest.approx(reference.pvalue, rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200))
def test_skew_psi_of_identical_samples_is_zero(values: list[float]) -> None:
    assert _one_feature(values, values).psi == 0.0


def test_compare_skew_ks_equals_scipy() -> None:
    offline = usage_frame(200, 5, seed=1)
    served = usage_frame(200, 5, seed=2)
    report = compare_skew(offline, served, ["calls_last_30d"])
    (feature,) = report.features
    reference = ks_2samp(offline["calls_last_30d"], served["calls_last_30d"])
    assert feature.ks == pytest.approx(reference.statistic)
    assert feature.ks_pvalue == pytest.approx(reference.pvalue)


def test_compare_skew_passes_same_distribution() -> None:
    report = compare_skew(account_frame(400, 3, seed=1), account_frame(400, 3, seed=5))
    assert report.passed, report.to_dict()
    kinds = {f.feature: f.kind for f in report.features}
    assert kinds["plan_type"] == "categorical" and kinds["monthly_revenue"] == "numeric"


def test_compare_skew_flags_shift_and_fill_policy() -> None:
    # session-length style bug: serving scaled differently; plus NaN filled with 0 online
    offline = usage_frame(300, 4, seed=1)
    offline.loc[offline.index[::10], "data_usage_gb_last_30d"] = np.nan
    served = usage_frame(300, 4, seed=2)
    served["calls_last_30d"] = served["calls_last_30d"] * 3.75
    report = compare_skew(pa.Table.from_pandas(offline), served)
    assert set(report.skewed) == {"calls_last_30d", "data_usage_gb_last_30d"}
    by_name = {f.feature: f for f in report.features}
    assert any("null rate" in r for r in by_name["data_usage_gb_last_30d"].reasons)
    assert by_name["calls_last_30d"].mean_served > 3 * by_name["calls_last_30d"].mean_offline
    assert not report.passed


def test_compare_skew_thresholds_configurable() -> None:
    offline = pd.DataFrame({"x": np.linspace(0, 1, 500)})
    served = pd.DataFrame({"x": np.linspace(0.05, 1.05, 500)})
    assert not compare_skew(offline, served, ks_threshold=0.01).passed
    assert compare_skew(offline, served, ks_threshold=0.5, psi_threshold=5).passed


@pytest.mark.parametrize(
    ("offline", "served", "field"),
    [
        (pd.DataFrame({"x": [1.0]}), pd.DataFrame({"y": [1.0]}), "features"),
        (pd.DataFrame({"x": [np.nan]}), pd.DataFrame({"x": [1.0]}), "x"),
    ],
)
def test_compare_skew_bad_input(offline: pd.DataFrame, served: pd.DataFrame, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        compare_skew(offline, served)
    assert info.value.field == field


def test_store_skew_uses_configured_thresholds(lite_fs: FeatureStore) -> None:
    offline = pd.DataFrame({"x": np.linspace(0, 1, 500)})
    served = pd.DataFrame({"x": np.linspace(0.05, 1.05, 500)})
    report = lite_fs.check_skew(offline, served)
    assert report.ks_threshold == lite_fs.settings.features_skew_ks_threshold
    assert report.passed  # KS 0.05 < 0.1
    assert not lite_fs.check_skew(offline, served, ks_threshold=0.01).passed


def test_served_features_reads_prediction_log(lite_fs: FeatureStore) -> None:
    serving = pytest.importorskip("keel.serving")
    if not hasattr(getattr(serving, "PredictionLog", None), "from_settings"):
        with pytest.raises(Unavailable):
            lite_fs.served_features("churn", 1)
        return
    from keel.serving import PredictionLog, PredictionRecord

    log = PredictionLog.from_settings(lite_fs.settings)
    now_ms = 1_790_000_000_000
    for i in range(20):
        log.append(
            PredictionRecord(
                request_id=f"r{i}",
                at_ms=now_ms + i,
                model="churn",
                version=1,
                features={"tenure_days": i, "plan_type": "pro"},
                output=0.5,
                latency_ms=1.0,
            )
        )
    log.close()
    served = lite_fs.served_features("churn", 1)
    assert sorted(served.column_names) == ["plan_type", "tenure_days"]
    assert sorted(served.column("tenure_days").to_pylist()) == list(range(20))
