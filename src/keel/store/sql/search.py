"""Translate a parsed run filter / order into one SQL query.

Top-level ``and`` comparisons on metrics and params become inner joins, so the
database can drive the query from the ``(experiment_id, key, value)`` index of
``latest_metrics``; comparisons under ``or`` become correlated ``EXISTS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, func, or_, select
from sqlalchemy.orm import aliased

from keel.store.sql._base import SqlBase
from keel.store.sql.tables import LatestMetricRow, ParamRow, RunRow, RunTagRow
from keel.tracking.filters import And, Comparison, Expr, Or, OrderKey

__all__ = ["SearchSql"]

_ATTRIBUTE_COLUMNS: dict[str, Any] = {
    "run_id": RunRow.id,
    "id": RunRow.id,
    "name": RunRow.name,
    "status": RunRow.status,
    "user": RunRow.user,
    "parent_run_id": RunRow.parent_run_id,
    "start_time": RunRow.start_time_ms,
    "end_time": RunRow.end_time_ms,
    "code_commit": RunRow.code_commit,
}


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "=":
        return column == value  # type: ignore[no-any-return]
    if op == "!=":
        return column != value  # type: ignore[no-any-return]
    if op == "<":
        return column < value  # type: ignore[no-any-return]
    if op == "<=":
        return column <= value  # type: ignore[no-any-return]
    if op == ">":
        return column > value  # type: ignore[no-any-return]
    if op == ">=":
        return column >= value  # type: ignore[no-any-return]
    if op == "like":
        return column.like(value)  # type: ignore[no-any-return]
    if op == "ilike":
        return func.lower(column).like(str(value).lower())
    if op == "in":
        return column.in_(value)  # type: ignore[no-any-return]
    if op == "not in":
        return column.not_in(value)  # type: ignore[no-any-return]
    raise AssertionError(f"unhandled operator {op}")


def _value_condition(table: Any, c: Comparison) -> ColumnElement[bool]:
    condition = and_(table.key == c.key, _compare(table.value, c.op, c.value))
    if table is LatestMetricRow or getattr(table, "is_nan", None) is not None:
        condition = and_(condition, table.is_nan == false())
    return condition


def _exists(c: Comparison) -> ColumnElement[bool]:
    if c.kind == "attribute":
        return _compare(_ATTRIBUTE_COLUMNS[c.key], c.op, c.value)
    table: Any = {"metric": LatestMetricRow, "param": ParamRow, "tag": RunTagRow}[c.kind]
    return exists().where(table.run_id == RunRow.id, _value_condition(table, c))


def _condition(expr: Expr) -> ColumnElement[bool]:
    if isinstance(expr, Comparison):
        return _exists(expr)
    if isinstance(expr, And):
        return and_(*(_condition(t) for t in expr.terms))
    if isinstance(expr, Or):
        return or_(*(_condition(t) for t in expr.terms))
    raise AssertionError(expr)


class SearchSql(SqlBase):
    """Run search."""

    def search_run_ids(
        self,
        experiment_ids: Sequence[str],
        expr: Expr | None,
        order: Sequence[OrderKey],
        *,
        limit: int,
        offset: int,
    ) -> list[str]:
        """Ids of matching runs in order; ties broken by start time then id."""
        query: Select[Any] = select(RunRow.id).where(RunRow.experiment_id.in_(experiment_ids))
        terms = list(expr.terms) if isinstance(expr, And) else [expr] if expr is not None else []
        joined: dict[tuple[str, str], Any] = {}
        for term in terms:
            if isinstance(term, Comparison) and term.kind in ("metric", "param"):
                table: Any = LatestMetricRow if term.kind == "metric" else ParamRow
                alias: Any = aliased(table)
                extra = (
                    [alias.experiment_id.in_(experiment_ids)] if table is LatestMetricRow else []
                )
                query = query.join(
                    alias, and_(alias.run_id == RunRow.id, _value_condition(alias, term), *extra)
                )
                joined.setdefault((term.kind, term.key), alias)
            else:
                query = query.where(_condition(term))
        order_columns: list[Any] = []
        for position, key in enumerate(order):
            if key.kind == "attribute":
                column = _ATTRIBUTE_COLUMNS[key.key]
                order_columns.append(column.desc() if key.descending else column.asc())
                continue
            alias = joined.get((key.kind, key.key))
            if alias is not None and position == len(order) - 1:
                # The key is inner-joined by the filter, so it is never NULL and
                # (value, run_id) is a total order the (experiment_id, key,
                # value, run_id) index delivers as is: the database stops after
                # one page instead of sorting every match.
                for column in (alias.value, alias.run_id):
                    order_columns.append(column.desc() if key.descending else column.asc())
                break
            if alias is None:
                table = {"metric": LatestMetricRow, "param": ParamRow, "tag": RunTagRow}[key.kind]
                alias = aliased(table)
                query = query.outerjoin(
                    alias, and_(alias.run_id == RunRow.id, alias.key == key.key)
                )
            # Runs without the key sort last in both directions.
            order_columns.append(alias.value.is_(None))
            order_columns.append(alias.value.desc() if key.descending else alias.value.asc())
        else:
            order_columns += [RunRow.start_time_ms.desc(), RunRow.id]
        query = query.order_by(*order_columns).limit(limit).offset(offset)
        with self.read() as s:
            return list(s.scalars(query))
