"""Team-draft interleaving (R-DEP-18) for ranking models: one list from two rankings, click
credit per team, and a preference test over many impressions.

keel's served models are scorers (one answer per input row); interleaving applies when a
model returns a ranking (a list of item ids per request). Team-draft (Radlinski, Kurup &
Joachims 2008): per round, a coin decides which ranking picks first; each picks its
highest item not yet shown, and the item is credited to that ranking's team. A click
credits its item's team; an impression is won by the team with more clicks (equal counts
are a tie). Across impressions the preference is a two-sided binomial sign test on the
wins, ties left out (``scipy.stats.binomtest``). Pure functions; no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from keel.errors import InvalidInput

__all__ = ["Interleaving", "Preference", "credit", "preference_test", "team_draft"]

Team = Literal["a", "b"]


@dataclass(frozen=True, slots=True)
class Interleaving:
    """The list shown and, per position, the team (``"a"`` or ``"b"``) that placed it."""

    items: tuple[Hashable, ...]
    teams: tuple[Team, ...]


@dataclass(frozen=True, slots=True)
class Preference:
    """The sign test over impressions: wins, ties, the share of decided impressions ``a``
    won with its exact (Clopper-Pearson) CI, the two-sided p-value and the preferred side
    (``None`` when not significant at ``alpha``)."""

    wins_a: int
    wins_b: int
    ties: int
    share_a: float | None
    ci_low: float | None
    ci_high: float | None
    pvalue: float
    alpha: float
    preferred: Team | None


def _ranking(values: Sequence[Hashable], field: str) -> list[Hashable]:
    items = list(values)
    if len(set(items)) != len(items):
        raise InvalidInput(f"{field}: a ranking lists each item once", field=field)
    return items


def team_draft(
    ranking_a: Sequence[Hashable],
    ranking_b: Sequence[Hashable],
    *,
    length: int | None = None,
    rng: random.Random | None = None,
) -> Interleaving:
    """Interleave two rankings by team draft, up to ``length`` items (default: every item of
    either). ``rng`` draws the coin per round (pass a seeded one for a repeatable list).

    >>> mixed = team_draft(["x", "y"], ["y", "z"], rng=random.Random(0))
    >>> sorted(mixed.items)
    ['x', 'y', 'z']
    """
    a, b = _ranking(ranking_a, "ranking_a"), _ranking(ranking_b, "ranking_b")
    universe = len(set(a) | set(b))
    wanted = universe if length is None else min(length, universe)
    if wanted < 0:
        raise InvalidInput("length: expected >= 0", field="length")
    coin = rng or random.Random()
    shown: list[Hashable] = []
    teams: list[Team] = []
    seen: set[Hashable] = set()
    count = {"a": 0, "b": 0}

    def pick(team: Team, ranking: list[Hashable]) -> bool:
        for item in ranking:
            if item not in seen:
                seen.add(item)
                shown.append(item)
                teams.append(team)
                count[team] += 1
                return True
        return False

    while len(shown) < wanted:
        # the team with fewer picks goes next; a coin breaks the tie (the draft's fairness)
        if count["a"] < count["b"] or (count["a"] == count["b"] and coin.random() < 0.5):
            order: tuple[tuple[Team, list[Hashable]], ...] = (("a", a), ("b", b))
        else:
            order = (("b", b), ("a", a))
        if not pick(*order[0]) and not pick(*order[1]):
            break
    return Interleaving(tuple(shown), tuple(teams))


def credit(interleaving: Interleaving, clicked: Iterable[Hashable]) -> Team | None:
    """The team that won one impression (more clicked items), or None for a tie/no click.

    Clicks on items that were not shown are refused (InvalidInput naming ``clicked``).
    """
    team_of = dict(zip(interleaving.items, interleaving.teams, strict=True))
    score = {"a": 0, "b": 0}
    for item in set(clicked):
        if item not in team_of:
            raise InvalidInput(f"clicked: {item!r} was not shown", field="clicked")
        score[team_of[item]] += 1
    if score["a"] == score["b"]:
        return None
    return "a" if score["a"] > score["b"] else "b"


def preference_test(outcomes: Iterable[Team | None], *, alpha: float = 0.05) -> Preference:
    """Two-sided binomial sign test of ``a``'s wins among decided impressions (ties out).

    With no decided impression the p-value is 1 and the share is None.

    >>> preference_test(["a"] * 9 + ["b"]).pvalue
    0.021484375
    """
    from scipy.stats import binomtest

    if not 0 < alpha < 1:
        raise InvalidInput("alpha: expected a number in (0, 1)", field="alpha", value=alpha)
    wins = {"a": 0, "b": 0, None: 0}
    for outcome in outcomes:
        if outcome not in wins:
            raise InvalidInput(
                f"outcomes: expected 'a', 'b' or None, got {outcome!r}", field="outcomes"
            )
        wins[outcome] += 1
    decided = wins["a"] + wins["b"]
    if decided == 0:
        return Preference(0, 0, wins[None], None, None, None, 1.0, alpha, None)
    result = binomtest(wins["a"], decided, 0.5, alternative="two-sided")
    ci = result.proportion_ci(confidence_level=1 - alpha, method="exact")
    share = wins["a"] / decided
    preferred: Team | None = None
    if result.pvalue < alpha:
        preferred = "a" if share > 0.5 else "b"
    return Preference(
        wins["a"],
        wins["b"],
        wins[None],
        share,
        float(ci.low),
        float(ci.high),
        float(result.pvalue),
        alpha,
        preferred,
    )
