"""Data-quality findings: each check fires on the break it names and stays quiet otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.errors import InvalidInput
from keel.monitoring.profile import ReferenceProfile
from keel.monitoring.quality import QualityThresholds, check_quality


@pytest.fixture
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 2_000
    revenue = rng.normal(70, 20, n)
    revenue[:40] = np.nan  # 2% null in training already
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n),
            "revenue": revenue,
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )


def _window(reference: pd.DataFrame, seed: int = 2) -> pd.DataFrame:
    return reference.sample(frac=0.5, random_state=seed).reset_index(drop=True)


def test_a_clean_window_has_no_findings(reference: pd.DataFrame) -> None:
    report = check_quality(ReferenceProfile.from_frame(reference), _window(reference))
    assert report.findings == [] and report.ok


def test_missing_and_unexpected_columns(reference: pd.DataFrame) -> None:
    window = _window(reference).drop(columns=["plan"]).assign(debug_flag=1)
    report = check_quality(reference, window)
    checks = {(f.check, f.feature, f.severity) for f in report.findings}
    assert checks == {
        ("missing_column", "plan", "error"),
        ("unexpected_column", "debug_flag", "warning"),
    }
    assert not report.ok


def test_null_rate_is_compared_with_the_reference_rate(reference: pd.DataFrame) -> None:
    window = _window(reference)
    window.loc[:49, "revenue"] = np.nan  # ~2% + 5% of 1,000 rows
    quiet = check_quality(reference, window)
    assert quiet.for_feature("revenue") == []
    window.loc[:150, "revenue"] = np.nan
    (finding,) = check_quality(reference, window).for_feature("revenue")
    assert finding.check == "null_rate" and finding.value == pytest.approx(
        window["revenue"].isna().mean()
    )
    assert finding.threshold == pytest.approx(0.02 + 0.05)


def test_type_change_names_examples(reference: pd.DataFrame) -> None:
    window = _window(reference)
    window["tenure"] = window["tenure"].astype(object)
    window.loc[:9, "tenure"] = "n/a"
    (finding,) = check_quality(reference, window).for_feature("tenure")
    assert finding.check == "type_change" and finding.examples == ("n/a",)
    assert finding.value == pytest.approx(10 / len(window))
    # Numbers that arrive as strings but parse are not a type break.
    window["tenure"] = _window(reference)["tenure"].astype(str)
    assert check_quality(reference, window).for_feature("tenure") == []


def test_out_of_range_and_new_categories(reference: pd.DataFrame) -> None:
    window = _window(reference)
    window.loc[:99, "revenue"] = 10_000.0
    window.loc[:29, "plan"] = "enterprise"
    report = check_quality(reference, window)
    (rng,) = report.for_feature("revenue")
    assert rng.check == "out_of_range" and rng.value == pytest.approx(100 / 994, rel=0.05)
    (cats,) = report.for_feature("plan")
    assert cats.check == "new_categories" and cats.examples == ("enterprise",)
    assert cats.value == pytest.approx(0.03)
    assert report.ok  # warnings only


def test_empty_and_all_null_windows(reference: pd.DataFrame) -> None:
    empty = check_quality(reference, reference.iloc[:0])
    assert [f.check for f in empty.findings] == ["empty_window"]
    nulls = _window(reference).assign(revenue=np.nan)
    (finding,) = check_quality(reference, nulls).for_feature("revenue")
    assert finding.check == "null_rate" and finding.value == 1.0


def test_constant_reference_column(reference: pd.DataFrame) -> None:
    reference = reference.assign(region=5.0)
    window = _window(reference).assign(region=6.0)
    (finding,) = check_quality(reference, window).for_feature("region")
    assert finding.check == "out_of_range" and finding.value == 1.0


def test_thresholds_are_validated() -> None:
    with pytest.raises(InvalidInput, match="null_rate_increase: must be a share"):
        QualityThresholds(null_rate_increase=2.0)
