"""Invalidation events: what each option combination means, and bad events."""

from __future__ import annotations

import pytest

from keel.errors import InvalidInput
from keel.serving.events import Invalidation, make_invalidation


@pytest.mark.parametrize(
    ("options", "kind"),
    [
        ({"everything": True}, "all"),
        ({"model": "churn"}, "model"),
        ({"model": "churn", "version": 3}, "version"),
        ({"model": "churn", "entity": "c-1"}, "entity"),
        ({"entity": "c-1"}, "entity"),
        ({"model": "churn", "alias": "champion"}, "alias"),
    ],
)
def test_events_round_trip_through_json(options: dict[str, object], kind: str) -> None:
    event = make_invalidation(**options)  # type: ignore[arg-type]
    assert event.kind == kind
    assert Invalidation.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({}, "model"),
        ({"version": 2}, "model"),
        ({"model": "churn", "version": 0}, "version"),
        ({"model": "churn", "everything": True}, "all"),
        ({"model": "churn", "entity": "e", "version": 2}, "entity"),
        ({"model": ""}, "model"),
    ],
)
def test_contradictory_or_empty_events_are_refused(options: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        make_invalidation(**options)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_matching_by_model_and_version() -> None:
    assert make_invalidation(model="a", version=2).matches("a", 2)
    assert not make_invalidation(model="a", version=2).matches("a", 1)
    assert make_invalidation(model="a").matches("a", 9)
    assert not make_invalidation(model="a").matches("b", 9)
    assert not make_invalidation(model="a", entity="e").matches("a", 1)


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"kind": "model"}'])
def test_malformed_messages_raise_invalid_input(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        Invalidation.from_json(raw)
