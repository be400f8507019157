"""The decision log in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, func, insert, or_, select, true
from sqlalchemy.orm import aliased

from keel.decisions.incidents import INCIDENT_RULES
from keel.decisions.models import Decision, DecisionQuery
from keel.errors import NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_deploy import DecisionRow

__all__ = ["DecisionSql", "insert_decisions"]

_COLUMNS = (
    "at_ms", "model", "kind", "summary", "details", "actor", "deployment", "related", "resolves",
)  # fmt: skip

#: The record that resolves a listed one (at most one: ``resolves`` is unique).
_RESOLUTION = aliased(DecisionRow, name="resolution")


def insert_decisions(conn: Connection, decisions: Sequence[Decision]) -> list[Decision]:
    """Insert ``decisions`` on ``conn`` (inside the caller's transaction); returns them with ids."""
    saved = []
    for decision in decisions:
        values = decision.model_dump(mode="json", include=set(_COLUMNS))
        key = conn.execute(insert(DecisionRow).values(**values)).inserted_primary_key
        assert key is not None  # a single-row INSERT always reports its key
        saved.append(decision.model_copy(update={"id": int(key[0])}))
    return saved


def decision_of(row: DecisionRow, resolution: int | None = None) -> Decision:
    """The entity of a stored row (``resolution``: the id of the record resolving it)."""
    return Decision(id=row.id, resolution=resolution, **{c: getattr(row, c) for c in _COLUMNS})


def _detail_is(key: str, value: Any) -> ColumnElement[bool]:
    # coalesce: an absent key is "no", not NULL, so NOT(...) (open=false) keeps the row
    field = DecisionRow.details[key]
    if isinstance(value, bool):
        return func.coalesce(field.as_boolean(), false()) == (true() if value else false())
    return func.coalesce(field.as_string(), "") == str(value)


def _is_incident() -> ColumnElement[bool]:
    """SQL for :func:`keel.decisions.incidents.is_incident` (the same table of rules)."""
    cases = []
    for kind, conditions in INCIDENT_RULES.items():
        when = DecisionRow.kind == kind
        if conditions:
            when = and_(when, or_(*(_detail_is(k, v) for k, v in conditions)))
        cases.append(when)
    return or_(*cases)


class DecisionSql(SqlBase):
    """Append and query decisions."""

    def add_decisions(self, decisions: list[Decision]) -> list[Decision]:
        """Append decisions in one transaction; a second resolution of one incident is a
        :class:`~keel.errors.Conflict` naming ``id``."""
        with self.write_conn("the incident is already resolved", field="id") as conn:
            return insert_decisions(conn, decisions)

    def get_decision(self, decision_id: int) -> Decision:
        """One record with its ``resolution``; NotFound names ``id``."""
        statement = (
            select(DecisionRow, _RESOLUTION.id)
            .outerjoin(_RESOLUTION, _RESOLUTION.resolves == DecisionRow.id)
            .where(DecisionRow.id == decision_id)
        )
        with self.read() as session:
            found = session.execute(statement).first()
        if found is None:
            raise NotFound(f"decision {decision_id} not found", field="id")
        return decision_of(found[0], found[1])

    def list_decisions(self, query: DecisionQuery) -> list[Decision]:
        """Decisions matching ``query``, newest first."""
        statement = select(DecisionRow, _RESOLUTION.id).outerjoin(
            _RESOLUTION, _RESOLUTION.resolves == DecisionRow.id
        )
        if query.model is not None:
            statement = statement.where(DecisionRow.model == query.model)
        if query.kind is not None:
            statement = statement.where(DecisionRow.kind == query.kind)
        if query.deployment is not None:
            statement = statement.where(DecisionRow.deployment == query.deployment)
        if query.since_ms is not None:
            statement = statement.where(DecisionRow.at_ms >= query.since_ms)
        if query.until_ms is not None:
            statement = statement.where(DecisionRow.at_ms < query.until_ms)
        if query.open is not None:
            is_open = and_(_is_incident(), _RESOLUTION.id.is_(None))
            statement = statement.where(is_open if query.open else ~is_open)
        statement = statement.order_by(DecisionRow.at_ms.desc(), DecisionRow.id.desc())
        with self.read() as session:
            rows = session.execute(statement.limit(query.limit)).all()
        return [decision_of(row, resolution) for row, resolution in rows]
