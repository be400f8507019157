"""A column mostly outside its reference range is a quality break, not drift (hardening #15.20)."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from keel.demo.data import TARGET, load_churn, split
from keel.errors import InvalidInput
from keel.monitoring.diagnosis import diagnose
from keel.monitoring.quality import QualityThresholds, check_quality

FEATURES = ["tenure", "monthly_charges", "total_charges"]


@pytest.fixture(scope="module")
def churn() -> dict:
    frame = load_churn().dropna(subset=FEATURES)
    train, reference, production = split(frame, seed=2, fractions=(0.5, 0.25))
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    return {"model": model, "reference": reference, "production": production}


def _out_of_range(reference: pd.DataFrame, window: pd.DataFrame, **limits: float) -> dict:
    report = check_quality(reference[FEATURES], window[FEATURES], QualityThresholds(**limits))
    (finding,) = [f for f in report.findings if f.check == "out_of_range"]
    return finding.as_dict()


def test_unit_change_is_an_error_and_a_few_outliers_a_warning(churn: dict) -> None:
    reference, production = churn["reference"], churn["production"]
    scaled = production.assign(monthly_charges=production["monthly_charges"] * 100)
    broken = _out_of_range(reference, scaled)
    assert (broken["severity"], broken["value"], broken["threshold"]) == ("error", 1.0, 0.5)
    assert "unit or feed change" in broken["message"]
    some = production.copy()
    some.loc[some.index[:100], "monthly_charges"] = 1_000.0  # ~5% of rows: drift-like
    assert _out_of_range(reference, some)["severity"] == "warning"
    lenient = _out_of_range(reference, scaled, out_of_range_error_share=1.0)
    assert lenient["severity"] == "warning"
    with pytest.raises(InvalidInput, match="out_of_range_error_share"):
        QualityThresholds(out_of_range_error_share=1.5)


def test_diagnosis_names_the_quality_break_not_drift(churn: dict) -> None:
    production = churn["production"]
    scaled = production.assign(monthly_charges=production["monthly_charges"] * 100)
    result = diagnose(churn["model"], churn["reference"], scaled, FEATURES)
    assert result.verdict == "data-quality break", result.as_dict()
    assert result.scores["data drift"] == 0.0  # the broken column's "drift" is the break
    assert any(e.startswith("data quality: 100.0% of monthly_charges") for e in result.evidence)
    assert any("monthly_charges moved because it is broken" in e for e in result.evidence)
