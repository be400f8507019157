"""SQL persistence of feature-store definitions, usage and freshness."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from sqlalchemy import func, select, update

from keel.features.models import MaterializationRecord, StoredDefinition, UsageRecord
from keel.store.sql._base import SqlBase, upsert
from keel.store.sql.tables_features import (
    FeatureDefinitionRow,
    FeatureFreshnessRow,
    FeatureUsageRow,
)

__all__ = ["DefinitionWrite", "FeatureSql"]

#: (kind, name, version, spec, spec_hash) of one new definition version.
DefinitionWrite = tuple[str, str, int, dict[str, object], str]


def _stored(row: FeatureDefinitionRow) -> StoredDefinition:
    return StoredDefinition(
        kind=row.kind,
        name=row.name,
        version=row.version,
        spec=dict(row.spec),
        spec_hash=row.spec_hash,
        created_at_ms=row.created_at_ms,
        removed_at_ms=row.removed_at_ms,
    )


class FeatureSql(SqlBase):
    """Definitions (append-only versions), usage and freshness of the feature store."""

    def latest_definitions(self, *, include_removed: bool = False) -> list[StoredDefinition]:
        """The newest version of every (kind, name); removed ones only when asked."""
        newest = (
            select(
                FeatureDefinitionRow.kind,
                FeatureDefinitionRow.name,
                func.max(FeatureDefinitionRow.version).label("version"),
            )
            .group_by(FeatureDefinitionRow.kind, FeatureDefinitionRow.name)
            .subquery()
        )
        query = (
            select(FeatureDefinitionRow)
            .join(
                newest,
                (FeatureDefinitionRow.kind == newest.c.kind)
                & (FeatureDefinitionRow.name == newest.c.name)
                & (FeatureDefinitionRow.version == newest.c.version),
            )
            .order_by(FeatureDefinitionRow.kind, FeatureDefinitionRow.name)
        )
        if not include_removed:
            query = query.where(FeatureDefinitionRow.removed_at_ms.is_(None))
        with self.read() as session:
            return [_stored(row) for row in session.scalars(query)]

    def definition_history(self, kind: str, name: str) -> list[StoredDefinition]:
        """Every version of one definition, oldest first (empty when unknown)."""
        query = (
            select(FeatureDefinitionRow)
            .where(FeatureDefinitionRow.kind == kind, FeatureDefinitionRow.name == name)
            .order_by(FeatureDefinitionRow.version)
        )
        with self.read() as session:
            return [_stored(row) for row in session.scalars(query)]

    def apply_definitions(
        self,
        writes: Sequence[DefinitionWrite],
        removals: Sequence[tuple[str, str, int]],
        new_features: Iterable[tuple[str, str]],
        now_ms: int,
    ) -> None:
        """Write new versions, mark removals and register new features, all in one transaction.

        A concurrent apply that wrote the same version first makes this one
        fail with ``Conflict`` (primary key), so no version is silently lost.
        """
        with self.write_conn("definitions changed concurrently; plan again") as conn:
            if writes:
                conn.execute(
                    FeatureDefinitionRow.__table__.insert(),  # type: ignore[attr-defined]
                    [
                        {
                            "kind": kind,
                            "name": name,
                            "version": version,
                            "spec": spec,
                            "spec_hash": spec_hash,
                            "created_at_ms": now_ms,
                            "removed_at_ms": None,
                        }
                        for kind, name, version, spec, spec_hash in writes
                    ],
                )
            for kind, name, version in removals:
                conn.execute(
                    update(FeatureDefinitionRow)
                    .where(
                        FeatureDefinitionRow.kind == kind,
                        FeatureDefinitionRow.name == name,
                        FeatureDefinitionRow.version == version,
                    )
                    .values(removed_at_ms=now_ms)
                )
            pairs = set(new_features)
            if pairs:
                known = set(
                    (r[0], r[1])
                    for r in conn.execute(select(FeatureUsageRow.view, FeatureUsageRow.feature))
                )
                # A feature applied again keeps its first definition time.
                fresh = sorted(pairs - known)
                if fresh:
                    conn.execute(
                        FeatureUsageRow.__table__.insert(),  # type: ignore[attr-defined]
                        [{"view": v, "feature": f, "defined_at_ms": now_ms} for v, f in fresh],
                    )

    def record_usage(
        self, pairs: Iterable[tuple[str, str]], mode: Literal["offline", "online"], at_ms: int
    ) -> None:
        """Set the last offline / online read time of each (view, feature)."""
        column = "last_offline_ms" if mode == "offline" else "last_online_ms"
        rows = [{"view": v, "feature": f, "defined_at_ms": at_ms, column: at_ms} for v, f in pairs]
        if not rows:
            return
        with self.write_conn() as conn:
            upsert(conn, FeatureUsageRow.__table__, rows, ["view", "feature"], [column])

    def usage(self) -> list[UsageRecord]:
        """Usage of every feature ever applied."""
        with self.read() as session:
            return [
                UsageRecord(
                    view=row.view,
                    feature=row.feature,
                    defined_at_ms=row.defined_at_ms,
                    last_offline_ms=row.last_offline_ms,
                    last_online_ms=row.last_online_ms,
                )
                for row in session.scalars(
                    select(FeatureUsageRow).order_by(FeatureUsageRow.view, FeatureUsageRow.feature)
                )
            ]

    def record_materialization(self, view: str, until_ms: int, at_ms: int, rows: int) -> None:
        """Remember that ``view`` is materialised up to ``until_ms`` (never moves back)."""
        self._bump(view, rows, materialized_until_ms=until_ms, last_materialized_at_ms=at_ms)

    def record_push(self, view: str, at_ms: int, rows: int) -> None:
        """Remember a push of ``rows`` rows into ``view``'s online copy."""
        self._bump(view, rows, last_push_at_ms=at_ms)

    def _bump(self, view: str, rows: int, **values: int) -> None:
        with self.write_conn() as conn:
            existing = conn.execute(
                select(FeatureFreshnessRow.materialized_until_ms).where(
                    FeatureFreshnessRow.view == view
                )
            ).first()
            if existing is None:
                conn.execute(
                    FeatureFreshnessRow.__table__.insert(),  # type: ignore[attr-defined]
                    {"view": view, "rows_written": rows, **values},
                )
                return
            if "materialized_until_ms" in values and existing[0] is not None:
                values["materialized_until_ms"] = max(values["materialized_until_ms"], existing[0])
            conn.execute(
                update(FeatureFreshnessRow)
                .where(FeatureFreshnessRow.view == view)
                .values(rows_written=FeatureFreshnessRow.rows_written + rows, **values)
            )

    def materializations(self) -> dict[str, MaterializationRecord]:
        """Freshness records by view."""
        with self.read() as session:
            return {
                row.view: MaterializationRecord(
                    view=row.view,
                    materialized_until_ms=row.materialized_until_ms,
                    last_materialized_at_ms=row.last_materialized_at_ms,
                    last_push_at_ms=row.last_push_at_ms,
                    rows_written=row.rows_written,
                )
                for row in session.scalars(select(FeatureFreshnessRow))
            }
