"""Shadow-vs-canary recommendation (R-DEP-05) and team-draft interleaving (R-DEP-18)."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest

from keel.deploy.interleave import credit, preference_test, team_draft
from keel.deploy.recommend import recommend_strategy
from keel.errors import InvalidInput

BASE = {"users": 10_000, "impact_per_error": 5.0, "requests": 1_000_000}


def test_recommend_shadow_when_a_bad_rollout_costs_more_than_the_overhead() -> None:
    found = recommend_strategy(error_rate=0.02, cost_per_prediction=0.0001, **BASE)
    assert found.strategy == "shadow"
    assert found.bad_rollout_cost == pytest.approx(0.02 * 10_000 * 5.0)
    assert found.shadow_overhead == pytest.approx(0.15 * 1_000_000 * 0.0001)
    assert found.canary_exposure_cost == pytest.approx(1000 * 0.05)
    assert found.break_even_error_rate == pytest.approx(15 / 50_000)
    assert "1,000.00" in found.reason and "15.00" in found.reason


def test_recommend_canary_when_the_overhead_costs_more() -> None:
    found = recommend_strategy(
        error_rate=0.0001, cost_per_prediction=0.01, overhead_share=0.2, **BASE
    )
    assert found.strategy == "canary"
    assert found.shadow_overhead == pytest.approx(2000.0)
    assert found.bad_rollout_cost == pytest.approx(5.0)
    # at the break-even error rate the two costs are equal: canary (not strictly more)
    even = recommend_strategy(
        error_rate=found.break_even_error_rate, cost_per_prediction=0.01, overhead_share=0.2,
        **BASE,
    )  # fmt: skip
    assert even.strategy == "canary"


@pytest.mark.parametrize(
    ("field", "value"),
    [("error_rate", 1.5), ("error_rate", -0.1), ("users", -1), ("overhead_share", 2.0),
     ("cost_per_prediction", float("nan")), ("first_canary_share", 101)],
)  # fmt: skip
def test_recommend_refuses_bad_numbers_naming_the_field(field: str, value: float) -> None:
    args = {"error_rate": 0.01, "cost_per_prediction": 0.001, **BASE, field: value}
    with pytest.raises(InvalidInput, match=field) as caught:
        recommend_strategy(**args)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_team_draft_shows_every_item_once_and_balances_the_teams() -> None:
    a, b = list("abcdefgh"), list("hgfedcba")
    for seed in range(50):
        mixed = team_draft(a, b, rng=random.Random(seed))
        assert sorted(mixed.items) == sorted(a)
        # team draft: the teams' pick counts never differ by more than one
        assert abs(mixed.teams.count("a") - mixed.teams.count("b")) <= 1
        # each team's items keep their own ranking's order
        for team, ranking in (("a", a), ("b", b)):
            picked = [i for i, t in zip(mixed.items, mixed.teams, strict=True) if t == team]
            assert picked == sorted(picked, key=ranking.index)


def test_team_draft_identical_rankings_give_the_same_list() -> None:
    mixed = team_draft([3, 1, 2], [3, 1, 2], rng=random.Random(1))
    assert mixed.items == (3, 1, 2)
    assert team_draft([1, 2, 3], [4, 5], length=2, rng=random.Random(0)).items.__len__() == 2


def test_credit_goes_to_the_team_with_more_clicks() -> None:
    mixed = team_draft(["x", "y"], ["z", "w"], rng=random.Random(3))
    team_of = dict(zip(mixed.items, mixed.teams, strict=True))
    assert credit(mixed, ["x"]) == team_of["x"]
    assert credit(mixed, []) is None
    assert credit(mixed, ["x", "z"]) is None  # one click each: a tie
    with pytest.raises(InvalidInput, match="clicked"):
        credit(mixed, ["nope"])
    with pytest.raises(InvalidInput, match="ranking_a"):
        team_draft(["x", "x"], ["y"])


def test_preference_sign_test_equals_scipy_binomtest() -> None:
    rng = random.Random(7)
    # a simulated user who prefers ranker a's items 60 % of the time over 300 impressions
    a_rank, b_rank = list(range(10)), list(range(10, 20))
    outcomes = []
    for _ in range(300):
        mixed = team_draft(a_rank, b_rank, length=6, rng=rng)
        pool = [i for i in mixed.items if (i < 10) == (rng.random() < 0.6)]
        outcomes.append(credit(mixed, pool[:1]))
    found = preference_test(outcomes)
    wins_a, wins_b = outcomes.count("a"), outcomes.count("b")
    expected = binomtest(wins_a, wins_a + wins_b, 0.5)
    assert (found.wins_a, found.wins_b, found.ties) == (wins_a, wins_b, outcomes.count(None))
    assert found.pvalue == pytest.approx(expected.pvalue, abs=1e-12)
    ci = expected.proportion_ci(confidence_level=0.95, method="exact")
    assert (found.ci_low, found.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert found.preferred == "a" and found.pvalue < 0.05


def test_preference_without_decided_impressions_and_bad_outcomes() -> None:
    none = preference_test([None, None])
    assert (none.pvalue, none.share_a, none.preferred, none.ties) == (1.0, None, None, 2)
    even = preference_test(["a", "b"] * 20)
    assert even.preferred is None and even.pvalue == pytest.approx(1.0)
    with pytest.raises(InvalidInput, match="outcomes"):
        preference_test(["c"])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="alpha"):
        preference_test(["a"], alpha=1.5)


@pytest.mark.parametrize("module", ["recommend", "interleave", "armdiff", "debugging", "drill"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    found = doctest.testmod(importlib.import_module(f"keel.deploy.{module}"))
    assert found.attempted >= 1 and found.failed == 0
