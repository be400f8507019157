"""The pieces of a prevention: monitor rules (text grammar, values against pandas) and the
gate overlay (sections merged, lists unioned, the prevention's numbers winning)."""

from __future__ import annotations

import numpy as np
import pytest

from keel.decisions.models import Decision
from keel.decisions.prevention import gate_overlay, merge_policy, with_prevention
from keel.demo.data import load_churn
from keel.errors import InvalidInput
from keel.monitoring.rules import evaluate_rules, parse_rule


def test_rule_values_are_pandas_statistics_of_the_window() -> None:
    frame = load_churn()[["tenure", "total_charges", "contract"]].head(500).copy()
    frame.loc[frame.index[:7], "total_charges"] = np.nan
    rules = [
        parse_rule("null_share(total_charges) > 0.01"),
        parse_rule("mean(tenure) >= 100"),
        parse_rule("min(total_charges) < 0"),
        parse_rule("max( tenure ) <= 72"),
        parse_rule("mean(contract) > 0"),  # no numeric value at all
        parse_rule("null_share(gone) > 0.5"),  # a vanished column
    ]
    got = evaluate_rules(rules, frame)
    share = frame["total_charges"].isna().mean()  # the table's own blanks and the 7 added
    assert share >= 7 / 500 and got[0]["value"] == pytest.approx(share) and got[0]["breached"]
    assert got[1]["value"] == pytest.approx(frame["tenure"].mean()) and not got[1]["breached"]
    assert got[2]["value"] == pytest.approx(frame["total_charges"].min()) and not got[2]["breached"]
    assert got[3]["value"] == frame["tenure"].max() and got[3]["breached"] is True
    assert (got[4]["breached"], got[4]["reason"]) == (True, "no value to measure")
    assert (got[5]["breached"], got[5]["reason"]) == (True, "column not in the window")
    assert [g["rule"] for g in got[:2]] == [
        "null_share(total_charges) > 0.01", "mean(tenure) >= 100",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["", "null_share total_charges > 1", "p99(tenure) > 1", "mean(tenure) = 3", "mean() > 1"],
)
def test_bad_rule_text_names_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rule(text, field="check.rule")
    assert caught.value.field == "check.rule"


def _resolution(at_ms: int, gate: dict[str, object]) -> Decision:
    return Decision(
        id=at_ms, at_ms=at_ms, model="churn", kind="resolution", summary="r", actor="ana",
        details={"check": {"type": "gate", "gate": gate}},
    )  # fmt: skip


def test_gate_rules_merge_oldest_first_and_win_over_the_given_policy() -> None:
    assert merge_policy(
        {"slices": {"columns": ["contract"], "tolerance": 0.02}, "strict": False},
        {"slices": {"columns": ["gender", "contract"]}, "strict": True},
    ) == {"slices": {"columns": ["contract", "gender"], "tolerance": 0.02}, "strict": True}
    records = [
        _resolution(2, {"floor": {"min_auc": 0.85}}),
        _resolution(1, {"floor": {"min_auc": 0.9}, "slices": {"columns": ["contract"]}}),
        Decision(
            at_ms=3,
            model="churn",
            kind="rollback",
            summary="x",
            actor="p",
            details={"check": {"gate": {"floor": {"min_auc": 0.1}}}},
        ),  # fmt: skip
    ]
    assert gate_overlay(records) == {
        "floor": {"min_auc": 0.85}, "slices": {"columns": ["contract"]},
    }  # fmt: skip
    policy = with_prevention({"floor": {"min_auc": 0.6}, "latency": {"enabled": False}}, records)
    assert policy.floor.min_auc == 0.85 and policy.slices.columns == ["contract"]
    assert policy.latency.enabled is False and policy.margin.min_improvement == 0.02
    assert with_prevention(None, []).floor.min_auc == 0.80
