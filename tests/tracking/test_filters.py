"""Filter parser: property tests (Hypothesis) and exact cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import BadRequest
from keel.tracking.filters import (
    And,
    Comparison,
    FilterLimits,
    Or,
    parse_filter,
    parse_order_by,
)

_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"and", "or", "in", "not", "like", "ilike", "asc", "desc"}
)
_NUMBERS = st.floats(allow_nan=False, allow_infinity=False, width=32).map(float)
_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="'\\", blacklist_categories=("Cs",)), max_size=12
)


@st.composite
def comparisons(draw: st.DrawFn) -> tuple[str, Comparison]:
    kind = draw(st.sampled_from(["metric", "param", "tag"]))
    key = draw(_NAMES)
    if kind == "metric":
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]))
        value: float | str = draw(_NUMBERS)
        literal = repr(value)
    else:
        op = draw(st.sampled_from(["=", "!=", "like", "ilike"]))
        value = draw(_TEXT)
        literal = f"'{value}'"
    return f"{kind}s.{key} {op} {literal}", Comparison(kind, key, op, value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_bad_request(text: str) -> None:
    try:
        parse_filter(text)
    except BadRequest as error:
        assert error.field == "filter" and error.status == 400


@settings(max_examples=200, deadline=None)
@given(st.lists(comparisons(), min_size=1, max_size=5), st.sampled_from(["and", "or"]))
def test_generated_expressions_round_trip(parts: list[tuple[str, Comparison]], joiner: str) -> None:
    text = f" {joiner} ".join(p[0] for p in parts)
    expected = [p[1] for p in parts]
    parsed = parse_filter(text)
    if len(expected) == 1:
        assert parsed == expected[0]
    else:
        assert parsed == (And if joiner == "and" else Or)(tuple(expected))


def test_and_binds_tighter_than_or() -> None:
    parsed = parse_filter("metrics.a > 1 or metrics.b > 2 and params.c = 'x'")
    assert isinstance(parsed, Or) and isinstance(parsed.terms[1], And)


def test_too_many_comparisons_rejected() -> None:
    with pytest.raises(BadRequest, match="too many"):
        parse_filter(" and ".join(["metrics.a > 1"] * 51))


def test_order_by_rejects_trailing_tokens() -> None:
    with pytest.raises(BadRequest) as caught:
        parse_order_by(["metrics.auc desc extra"])
    assert caught.value.field == "order_by" and caught.value.detail["token"] == "extra"


# ---- complexity limits (issue 7) ---------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=3000))
def test_any_nesting_depth_parses_or_raises_bad_request_never_recursion(depth: int) -> None:
    text = "(" * depth + "metrics.a > 1" + ")" * depth
    limits = FilterLimits(max_length=10_000, max_tokens=10_000, max_depth=16)
    if depth <= limits.max_depth:
        assert parse_filter(text, limits) == Comparison("metric", "a", ">", 1.0)
    else:
        with pytest.raises(BadRequest, match="nested too deep"):
            parse_filter(text, limits)


@settings(max_examples=100, deadline=None)
@given(st.lists(comparisons(), min_size=1, max_size=30), st.integers(min_value=4, max_value=60))
def test_token_limit_is_exact(parts: list[tuple[str, Comparison]], max_tokens: int) -> None:
    text = " and ".join(p[0] for p in parts)
    tokens = 4 * len(parts) - 1  # key op value per comparison, "and" between them
    limits = FilterLimits(max_tokens=max_tokens)
    if tokens <= max_tokens:
        assert parse_filter(text, limits) is not None
    else:
        with pytest.raises(BadRequest, match="too many tokens") as caught:
            parse_filter(text, limits)
        assert caught.value.detail["limit"] == max_tokens


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=0, max_size=300), st.integers(min_value=16, max_value=200))
def test_length_limit_applies_before_parsing(text: str, max_length: int) -> None:
    limits = FilterLimits(max_length=max_length)
    try:
        parse_filter(text, limits)
    except BadRequest as error:
        assert error.field == "filter"
        if len(text) > max_length:
            assert error.detail["limit"] == max_length
    else:
        assert len(text) <= max_length


def test_configured_term_limit_is_used() -> None:
    with pytest.raises(BadRequest, match="at most 2"):
        parse_filter("metrics.a > 1 and metrics.b > 1 and metrics.c > 1", FilterLimits(max_terms=2))
