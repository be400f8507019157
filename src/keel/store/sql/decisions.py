"""The decision log in SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert, select

from keel.decisions.models import Decision, DecisionQuery
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_deploy import DecisionRow

__all__ = ["DecisionSql", "insert_decisions"]

_COLUMNS = ("at_ms", "model", "kind", "summary", "details", "actor", "deployment", "related")


def insert_decisions(conn: Connection, decisions: Sequence[Decision]) -> list[Decision]:
    """Insert ``decisions`` on ``conn`` (inside the caller's transaction); returns them with ids."""
    saved = []
    for decision in decisions:
        values = decision.model_dump(mode="json", include=set(_COLUMNS))
        key = conn.execute(insert(DecisionRow).values(**values)).inserted_primary_key
        assert key is not None  # a single-row INSERT always reports its key
        saved.append(decision.model_copy(update={"id": int(key[0])}))
    return saved


def decision_of(row: DecisionRow) -> Decision:
    """The entity of a stored row."""
    return Decision(id=row.id, **{c: getattr(row, c) for c in _COLUMNS})


class DecisionSql(SqlBase):
    """Append and query decisions."""

    def add_decisions(self, decisions: list[Decision]) -> list[Decision]:
        """Append decisions in one transaction."""
        with self.write_conn() as conn:
            return insert_decisions(conn, decisions)

    def list_decisions(self, query: DecisionQuery) -> list[Decision]:
        """Decisions matching ``query``, newest first."""
        statement = select(DecisionRow)
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
        statement = statement.order_by(DecisionRow.at_ms.desc(), DecisionRow.id.desc())
        with self.read() as session:
            return [decision_of(r) for r in session.scalars(statement.limit(query.limit))]
