"""Deployments, replica reports, bad prediction windows and leases in SQL.

State changes are compare-and-set on ``deployments.version``; the decision records and
bad windows of a change are written in the same transaction, so a change is all there or
not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keel.decisions.models import Decision
from keel.deploy.models import FINISHED, AliasMove, BadWindow, Deployment, ReplicaStatus
from keel.errors import Conflict, NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.decisions import insert_decisions
from keel.store.sql.registry import move_alias
from keel.store.sql.tables_deploy import (
    BadWindowRow,
    DeploymentReplicaRow,
    DeploymentRow,
    LeaseRow,
)

__all__ = ["DeploymentSql"]

_COLUMNS = (
    "name",
    "model",
    "strategy",
    "status",
    "policy",
    "state",
    "version",
    "created_by",
    "created_at_ms",
    "updated_at_ms",
)


def _deployment(row: DeploymentRow, replicas: Sequence[DeploymentReplicaRow] = ()) -> Deployment:
    return Deployment(
        **{c: getattr(row, c) for c in _COLUMNS},
        replicas=[
            ReplicaStatus(
                replica=r.replica,
                state_version=r.state_version,
                weights=r.weights,
                reported_at_ms=r.reported_at_ms,
                shadow=r.shadow or {},
            )
            for r in replicas
        ],
    )


class DeploymentSql(SqlBase):
    """Persistence of deployments (see the module docstring)."""

    def create_deployment(
        self, deployment: Deployment, decisions: Sequence[Decision] = ()
    ) -> Deployment:
        """Insert a deployment; a taken name raises :class:`Conflict` naming ``name``."""
        conflict = f"deployment {deployment.name!r} already exists"
        with self.write_conn(conflict, "name") as conn:
            taken = conn.execute(
                select(DeploymentRow.name).where(DeploymentRow.name == deployment.name)
            ).first()
            if taken is not None:
                raise Conflict(conflict, field="name")
            conn.execute(
                insert(DeploymentRow).values(
                    **deployment.model_dump(mode="json", include=set(_COLUMNS))
                )
            )
            insert_decisions(conn, decisions)
        return self.get_deployment(deployment.name)

    def get_deployment(self, name: str) -> Deployment:
        """One deployment with its replica reports; raises :class:`NotFound`."""
        with self.read() as session:
            row = session.get(DeploymentRow, name)
            if row is None:
                raise NotFound(f"deployment {name!r} not found", field="name")
            replicas = session.scalars(
                select(DeploymentReplicaRow)
                .where(DeploymentReplicaRow.deployment == name)
                .order_by(DeploymentReplicaRow.replica)
            ).all()
            return _deployment(row, replicas)

    def list_deployments(
        self, *, model: str | None = None, active_only: bool = False
    ) -> list[Deployment]:
        """Deployments by name (without replica reports)."""
        statement = select(DeploymentRow).order_by(DeploymentRow.name)
        if model is not None:
            statement = statement.where(DeploymentRow.model == model)
        if active_only:
            statement = statement.where(DeploymentRow.status.not_in(sorted(FINISHED)))
        with self.read() as session:
            return [_deployment(r) for r in session.scalars(statement)]

    def update_deployment(
        self,
        name: str,
        expected_version: int,
        *,
        status: str,
        state: dict[str, Any],
        at_ms: int,
        decisions: Sequence[Decision] = (),
        bad_windows: Sequence[BadWindow] = (),
        alias: AliasMove | None = None,
    ) -> Deployment:
        """Compare-and-set: apply the change only if the stored version is still
        ``expected_version``; otherwise :class:`Conflict` (field ``name``) and nothing is
        written. ``alias``: a registry alias compare-and-set in the same transaction; when
        it fails (Conflict naming ``alias``, or ``version`` for an archived target) nothing
        is written either."""
        with self.write_conn() as conn:
            result = conn.execute(
                update(DeploymentRow)
                .where(DeploymentRow.name == name, DeploymentRow.version == expected_version)
                .values(
                    status=status,
                    state=state,
                    version=DeploymentRow.version + 1,
                    updated_at_ms=at_ms,
                )
            )
            if result.rowcount != 1:
                found = conn.execute(
                    select(DeploymentRow.version).where(DeploymentRow.name == name)
                ).scalar()
                if found is None:
                    raise NotFound(f"deployment {name!r} not found", field="name")
                raise Conflict(
                    f"deployment {name!r} changed concurrently (version {found}, expected "
                    f"{expected_version}); re-read it and retry",
                    field="name",
                    version=int(found),
                )
            if alias is not None:
                # after the deployment's row: a concurrent change of the deployment is its
                # own Conflict, and an alias refusal means the deployment was as expected
                with Session(conn, expire_on_commit=False) as session:
                    move_alias(
                        session,
                        alias.model,
                        alias.alias,
                        alias.version,
                        actor=alias.actor,
                        reason=alias.reason,
                        expected=alias.expected,
                    )
                    session.flush()
            insert_decisions(conn, decisions)
            for window in bad_windows:
                conn.execute(insert(BadWindowRow).values(**window.model_dump(exclude={"id"})))
        return self.get_deployment(name)

    def report_replica(
        self,
        name: str,
        replica: str,
        state_version: int,
        weights: dict[str, float],
        at_ms: int,
        shadow: dict[str, int] | None = None,
    ) -> None:
        """Record what ``replica`` serves for deployment ``name`` (insert or replace), with
        its shadow-copy counts by ``arm:outcome``."""
        values = {
            "deployment": name,
            "replica": replica,
            "state_version": state_version,
            "weights": weights,
            "reported_at_ms": at_ms,
            "shadow": shadow or {},
        }
        with self.write_conn(f"deployment {name!r} not found", "name") as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(DeploymentReplicaRow).values(**values)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["deployment", "replica"],
                    set_={
                        k: statement.excluded[k]
                        for k in values
                        if k not in ("deployment", "replica")
                    },
                )
            )

    def forget_replicas(self, name: str, older_than_ms: int) -> None:
        """Drop replica reports not refreshed since ``older_than_ms`` (replicas gone)."""
        with self.write_conn() as conn:
            conn.execute(
                delete(DeploymentReplicaRow).where(
                    DeploymentReplicaRow.deployment == name,
                    DeploymentReplicaRow.reported_at_ms < older_than_ms,
                )
            )

    def list_bad_windows(
        self, *, model: str | None = None, version: int | None = None, deployment: str | None = None
    ) -> list[BadWindow]:
        """Recorded bad windows, oldest first."""
        statement = select(BadWindowRow).order_by(BadWindowRow.from_ms, BadWindowRow.id)
        if model is not None:
            statement = statement.where(BadWindowRow.model == model)
        if version is not None:
            statement = statement.where(BadWindowRow.version == version)
        if deployment is not None:
            statement = statement.where(BadWindowRow.deployment == deployment)
        with self.read() as session:
            return [
                BadWindow.model_validate(
                    {c.key: getattr(r, c.key) for c in BadWindowRow.__table__.columns}
                )
                for r in session.scalars(statement)
            ]

    # ---- leases --------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_ms: int, now_ms: int) -> bool:
        """Take (or renew) lease ``name`` for ``holder`` until ``now_ms + ttl_ms``.

        True when ``holder`` now holds it: the lease was free, expired, or already its own.
        One conditional UPDATE decides, so of two contenders exactly one wins (PostgreSQL
        re-checks the WHERE after the row lock; SQLite serialises writers).
        """
        with self.write_conn() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(LeaseRow)
                .values(name=name, holder=None, expires_at_ms=0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            result = conn.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.name == name,
                    or_(LeaseRow.expires_at_ms < now_ms, LeaseRow.holder == holder),
                )
                .values(holder=holder, expires_at_ms=now_ms + ttl_ms)
            )
            return bool(result.rowcount == 1)

    def release_lease(self, name: str, holder: str) -> None:
        """Give lease ``name`` up if ``holder`` holds it."""
        with self.write_conn() as conn:
            conn.execute(
                update(LeaseRow)
                .where(LeaseRow.name == name, LeaseRow.holder == holder)
                .values(holder=None, expires_at_ms=0)
            )
