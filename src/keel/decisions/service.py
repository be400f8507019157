"""Append to and read the decision log."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from keel._durations import parse_age_s
from keel._models import now_ms, stored_int
from keel.decisions.models import Decision, DecisionQuery
from keel.errors import InvalidInput

__all__ = ["DecisionLog", "DecisionStore"]

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class DecisionStore(Protocol):
    """Persistence of the decision log (``keel.store.sql.decisions``)."""

    def add_decisions(self, decisions: list[Decision]) -> list[Decision]: ...

    def list_decisions(self, query: DecisionQuery) -> list[Decision]: ...

    def get_decision(self, decision_id: int) -> Decision: ...


class DecisionLog:
    """The use cases of the decision log over a :class:`DecisionStore` and a clock."""

    def __init__(self, store: DecisionStore, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.clock = clock

    def record(
        self,
        kind: str,
        model: str,
        summary: str,
        details: Mapping[str, Any] | None = None,
        actor: str = "policy",
        deployment: str | None = None,
        *,
        related: Mapping[str, Any] | None = None,
        at_ms: int | None = None,
    ) -> Decision:
        """Append one decision and return it with its id.

        ``kind`` is lowercase words joined by ``_`` (see :data:`keel.decisions.KINDS`);
        ``actor`` is ``policy``, ``trigger``, a job or a user name.
        """
        entry = self.build(
            kind, model, summary, details, actor, deployment, related=related, at_ms=at_ms
        )
        return self.store.add_decisions([entry])[0]

    def build(
        self,
        kind: str,
        model: str,
        summary: str,
        details: Mapping[str, Any] | None = None,
        actor: str = "policy",
        deployment: str | None = None,
        *,
        related: Mapping[str, Any] | None = None,
        at_ms: int | None = None,
    ) -> Decision:
        """A checked, unsaved decision (stores that write it with other rows call this)."""
        if not _KIND.match(kind):
            raise InvalidInput(
                f"kind must be lowercase words joined by '_', got {kind!r}", field="kind"
            )
        if not model:
            raise InvalidInput("model must not be empty", field="model")
        if not actor:
            raise InvalidInput("actor must not be empty", field="actor")
        return Decision(
            at_ms=self.clock() if at_ms is None else at_ms,
            model=model,
            kind=kind,
            summary=summary[:2000],
            details=dict(details or {}),
            actor=actor[:256],
            deployment=deployment,
            related=dict(related or {}),
        )

    def query(
        self,
        *,
        model: str | None = None,
        kind: str | None = None,
        since: int | str | dt.datetime | None = None,
        until: int | str | dt.datetime | None = None,
        deployment: str | None = None,
        limit: int = 100,
        open: bool | None = None,
    ) -> list[Decision]:
        """Decisions matching every given filter, newest first.

        ``since``/``until``: epoch milliseconds, an ISO-8601 time, or an age (``7d``).
        ``open=True``: unresolved incidents only (:mod:`keel.decisions.incidents`).
        """
        if kind is not None and not _KIND.match(kind):
            raise InvalidInput(f"unknown kind spelling {kind!r}", field="kind")
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be in 1..10000", field="limit")
        return self.store.list_decisions(
            DecisionQuery(
                model=model,
                kind=kind,
                deployment=deployment,
                since_ms=self._time(since, "since"),
                until_ms=self._time(until, "until"),
                open=open,
                limit=limit,
            )
        )

    def get(self, decision_id: int) -> Decision:
        """One record with its ``resolution``; NotFound names ``id``; InvalidInput names
        ``decision_id`` outside 1..2^31−1 (no record can have such an id)."""
        return self.store.get_decision(stored_int(decision_id, "decision_id"))

    def _time(self, value: int | str | dt.datetime | None, field: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            return int(moment.timestamp() * 1000)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        age_s = parse_age_s(text)
        if age_s is not None:
            return self.clock() - int(age_s * 1000)
        try:
            return self._time(dt.datetime.fromisoformat(text), field)
        except ValueError:
            raise InvalidInput(
                f"{field} must be epoch milliseconds, an ISO-8601 time or an age like 7d; "
                f"got {value!r}",
                field=field,
            ) from None
