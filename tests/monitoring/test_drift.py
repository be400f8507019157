"""Drift detection over DataFrames: verdicts, edge cases and agreement with scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from keel.monitoring.drift import FeatureOverride, ReferenceProfile, detect_drift


def _frames(n_ref: int, n_cur: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "tenure": rng.gamma(2.0, 12.0, n),
                "revenue": rng.normal(70, 20, n),
                "calls": rng.poisson(30, n).astype(float),
                "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2]),
                "payment": rng.choice(["card", "bank", "check"], n),
            }
        )

    return frame(n_ref), frame(n_cur)


@pytest.mark.parametrize(
    ("n", "numeric_test", "cat_test"),
    [(800, "ks", "chi2"), (20_000, "wasserstein", "jensen_shannon")],
)
def test_injected_drift_is_flagged_and_nothing_else(
    n: int, numeric_test: str, cat_test: str
) -> None:
    ref, cur = _frames(n, n)
    cur["revenue"] = cur["revenue"] + 15  # 0.75 std shift
    cur["plan"] = np.random.default_rng(5).choice(["basic", "plus", "pro"], n, p=[0.2, 0.3, 0.5])
    report = detect_drift(ref, cur)
    assert sorted(report.drifted) == ["plan", "revenue"]
    assert report.get("revenue").test == numeric_test
    assert report.get("plan").test == cat_test
    assert [f.feature for f in report.features[:2]] == report.drifted  # worst first
    assert report.seconds > 0


def test_statistics_equal_scipy_on_small_windows() -> None:
    ref, cur = _frames(500, 400, seed=2)
    report = detect_drift(ref, cur, correction="none")
    expected = sps.ks_2samp(ref["tenure"], cur["tenure"])
    got = report.get("tenure")
    assert got.statistic == pytest.approx(expected.statistic, abs=1e-12)
    assert got.pvalue == pytest.approx(expected.pvalue, abs=1e-12)
    assert got.adjusted_pvalue == got.pvalue


def test_profile_is_reusable_and_equivalent_to_a_frame() -> None:
    ref, cur = _frames(2_000, 2_000, seed=3)
    profile = ReferenceProfile.from_frame(ref)
    a = detect_drift(profile, cur)
    b = detect_drift(ref, cur)
    assert [f.as_dict() for f in a.features] == [f.as_dict() for f in b.features]


def test_missing_column_and_insufficient_data_are_findings_not_errors() -> None:
    ref, cur = _frames(500, 20)
    report = detect_drift(ref, cur.drop(columns=["calls"]))
    assert report.get("calls").verdict == "missing column"
    assert report.get("tenure").verdict == "insufficient data"
    assert report.drifted == []


def test_all_null_window_and_constant_columns() -> None:
    ref, cur = _frames(500, 500)
    ref["constant"] = 1.0
    cur["constant"] = 1.0
    cur["tenure"] = np.nan
    report = detect_drift(ref, cur)
    assert report.get("tenure").verdict == "insufficient data"
    assert report.get("constant").verdict == "no drift"
    assert report.get("constant").statistic == 0.0


def test_new_categories_are_named_and_type_changes_are_coerced() -> None:
    ref, cur = _frames(600, 600)
    cur.loc[:99, "payment"] = "crypto"
    cur["calls"] = cur["calls"].astype(str)  # numbers arriving as strings upstream
    report = detect_drift(ref, cur)
    assert report.get("payment").new_categories == ("crypto",)
    assert report.get("payment").drifted
    assert report.get("calls").kind == "numeric"
    assert report.get("calls").verdict == "no drift"


def test_overrides_change_test_and_threshold() -> None:
    ref, cur = _frames(20_000, 20_000)
    cur["revenue"] = cur["revenue"] + 1.5  # 0.075 std: below the 0.1 distance threshold
    default = detect_drift(ref, cur)
    assert not default.get("revenue").drifted
    strict = detect_drift(
        ref, cur, overrides={"revenue": FeatureOverride(test="ks", threshold=0.01)}
    )
    assert strict.get("revenue").test == "ks" and strict.get("revenue").drifted
    psi = detect_drift(ref, cur, overrides={"plan": FeatureOverride(test="psi")})
    assert psi.get("plan").test == "psi" and psi.get("plan").threshold == 0.2


def test_unknown_features_and_bad_overrides_are_rejected() -> None:
    ref, cur = _frames(100, 100)
    with pytest.raises(ValueError, match="features: not in the reference: nope"):
        detect_drift(ref, cur, features=["tenure", "nope"])
    with pytest.raises(ValueError, match="does not apply"):
        detect_drift(ref, cur, overrides={"plan": FeatureOverride(test="ks")})


def test_report_dicts_are_json_friendly() -> None:
    ref, cur = _frames(300, 300)
    row = detect_drift(ref, cur.drop(columns=["plan"])).get("plan").as_dict()
    assert row["verdict"] == "missing column" and row["statistic"] is None
    assert row["drifted"] is False
