"""Interleaving impressions in SQL (R-DEP-18): one row per list a deployment's rank route
served, its last clicks and the team they credit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update

from keel.deploy.interleaving_models import Impression
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_deploy import ImpressionRow

__all__ = ["ImpressionSql"]


def _impression(row: ImpressionRow) -> Impression:
    return Impression(
        id=row.id,
        deployment=row.deployment,
        created_at_ms=row.created_at_ms,
        routing_key=row.routing_key,
        k=row.k,
        candidates=list(row.candidates),
        items=list(row.items),
        teams=list(row.teams),
        arms={"a": row.arm_a, "b": row.arm_b},
        versions={"a": row.version_a, "b": row.version_b},
        clicked=None if row.clicked is None else list(row.clicked),
        clicked_at_ms=row.clicked_at_ms,
        winner=row.winner,
    )


class ImpressionSql(SqlBase):
    """Save impressions, record their clicks, count the teams' wins."""

    def add(self, impression: Impression) -> None:
        """Insert ``impression``; Conflict naming ``impression_id`` when its id is taken."""
        values: dict[str, Any] = {
            "id": impression.id,
            "deployment": impression.deployment,
            "created_at_ms": impression.created_at_ms,
            "routing_key": impression.routing_key,
            "k": impression.k,
            "candidates": impression.candidates,
            "items": impression.items,
            "teams": impression.teams,
            "arm_a": impression.arms["a"],
            "arm_b": impression.arms["b"],
            "version_a": impression.versions["a"],
            "version_b": impression.versions["b"],
        }
        conflict = f"impression {impression.id!r} already exists"
        with self.write_conn(conflict, "impression_id") as conn:
            conn.execute(insert(ImpressionRow).values(**values))

    def get(self, impression_id: str) -> Impression | None:
        """The impression with this id, or None."""
        with self.read() as session:
            row = session.get(ImpressionRow, impression_id)
            return None if row is None else _impression(row)

    def set_clicks(
        self, impression_id: str, clicked: list[Any], winner: str | None, at_ms: int
    ) -> None:
        """Replace the clicks of an impression and the team they credit."""
        with self.write_conn() as conn:
            conn.execute(
                update(ImpressionRow)
                .where(ImpressionRow.id == impression_id)
                .values(clicked=clicked, winner=winner, clicked_at_ms=at_ms)
            )

    def tally(self, deployment: str) -> dict[str | None, int]:
        """Impressions of ``deployment`` by winner (``a``, ``b``, ``tie``; None: no click)."""
        query = (
            select(ImpressionRow.winner, func.count())
            .where(ImpressionRow.deployment == deployment)
            .group_by(ImpressionRow.winner)
        )
        with self.read() as session:
            return {winner: int(n) for winner, n in session.execute(query).all()}

    def teams(self, deployment: str) -> list[tuple[str, int, str, int]]:
        """The distinct (arm a, version a, arm b, version b) of ``deployment``'s impressions."""
        query = (
            select(
                ImpressionRow.arm_a,
                ImpressionRow.version_a,
                ImpressionRow.arm_b,
                ImpressionRow.version_b,
            )
            .where(ImpressionRow.deployment == deployment)
            .distinct()
        )
        with self.read() as session:
            return [(a, int(va), b, int(vb)) for a, va, b, vb in session.execute(query).all()]
