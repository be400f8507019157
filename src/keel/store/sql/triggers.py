"""Retraining triggers in SQL: definitions and their last evaluation / firing."""

from __future__ import annotations

from sqlalchemy import or_, select, update

from keel.automation.triggers.models import Trigger
from keel.errors import NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_triggers import TriggerRow

__all__ = ["TriggerSql"]

_STATE = ("created_at_ms", "last_evaluated_at_ms", "last_fired_at_ms", "last_job_id")


def _trigger(row: TriggerRow) -> Trigger:
    return Trigger.model_validate(
        {
            **row.spec,
            "created_by": row.created_by,
            "created_at_ms": row.created_at_ms,
            "updated_at_ms": row.updated_at_ms,
            "last_evaluated_at_ms": row.last_evaluated_at_ms,
            "last_fired_at_ms": row.last_fired_at_ms,
            "last_job_id": row.last_job_id,
        }
    )


class TriggerSql(SqlBase):
    """Save, read and claim firings of triggers."""

    def save_trigger(self, trigger: Trigger) -> Trigger:
        """Insert or replace a trigger's definition (its history of firings is kept)."""
        spec = trigger.model_dump(
            mode="json",
            exclude={"created_by", "updated_at_ms", *_STATE},
            exclude_none=True,
        )
        with self.write() as session:
            row = session.get(TriggerRow, trigger.name)
            if row is None:
                session.add(
                    TriggerRow(
                        name=trigger.name,
                        model=trigger.model,
                        spec=spec,
                        enabled=trigger.enabled,
                        created_by=trigger.created_by,
                        created_at_ms=trigger.created_at_ms,
                        updated_at_ms=trigger.updated_at_ms,
                    )
                )
            else:
                row.model, row.spec, row.enabled = trigger.model, spec, trigger.enabled
                row.updated_at_ms = trigger.updated_at_ms
        return self.get_trigger(trigger.name)

    def get_trigger(self, name: str) -> Trigger:
        """One trigger; raises :class:`NotFound`."""
        with self.read() as session:
            row = session.get(TriggerRow, name)
            if row is None:
                raise NotFound(f"trigger {name!r} not found", field="name")
            return _trigger(row)

    def list_triggers(self, model: str | None = None) -> list[Trigger]:
        """Every trigger (of one model when given), by name."""
        statement = select(TriggerRow).order_by(TriggerRow.name)
        if model is not None:
            statement = statement.where(TriggerRow.model == model)
        with self.read() as session:
            return [_trigger(r) for r in session.scalars(statement)]

    def delete_trigger(self, name: str) -> None:
        """Delete a trigger (its decision records stay); raises :class:`NotFound`."""
        with self.write() as session:
            row = session.get(TriggerRow, name)
            if row is None:
                raise NotFound(f"trigger {name!r} not found", field="name")
            session.delete(row)

    def mark_evaluated(self, name: str, at_ms: int) -> None:
        """Remember when the trigger was last evaluated (for ``min_interval``)."""
        with self.write_conn() as conn:
            conn.execute(
                update(TriggerRow).where(TriggerRow.name == name).values(last_evaluated_at_ms=at_ms)
            )

    def claim_firing(self, name: str, at_ms: int, cooldown_ms: int) -> bool:
        """Compare-and-set: record a firing at ``at_ms`` unless the trigger fired less than
        ``cooldown_ms`` before; True when this caller won (concurrent evaluators fire once)."""
        with self.write_conn() as conn:
            result = conn.execute(
                update(TriggerRow)
                .where(TriggerRow.name == name)
                .where(
                    or_(
                        TriggerRow.last_fired_at_ms.is_(None),
                        TriggerRow.last_fired_at_ms <= at_ms - cooldown_ms,
                    )
                )
                .values(last_fired_at_ms=at_ms)
            )
            return bool(result.rowcount == 1)

    def set_job(self, name: str, job_id: str) -> None:
        """Remember the job of the last firing."""
        with self.write_conn() as conn:
            conn.execute(
                update(TriggerRow).where(TriggerRow.name == name).values(last_job_id=job_id)
            )
