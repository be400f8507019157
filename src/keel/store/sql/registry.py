"""Registered models, versions, aliases and alias history in SQL."""

from __future__ import annotations

from types import EllipsisType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from keel._models import now_ms
from keel.errors import Conflict, InvalidInput, NotFound
from keel.registry.models import (
    AliasEvent,
    ModelCard,
    ModelFile,
    ModelStatus,
    ModelVersion,
    RegisteredModel,
)
from keel.store.sql._base import SqlBase
from keel.store.sql.tables import (
    AliasEventRow,
    ModelAliasRow,
    ModelVersionRow,
    RegisteredModelRow,
)

__all__ = ["RegistrySql", "move_alias"]

_MODEL_FIELDS = {"description", "owner", "status", "card", "tags"}
_VERSION_FIELDS = {"description", "status", "card", "tags"}


class RegistrySql(SqlBase):
    """Model registry persistence."""

    # ---- registered models -----------------------------------------------------
    def create_registered_model(self, model: RegisteredModel) -> RegisteredModel:
        """Insert a model; a taken name raises :class:`Conflict`."""
        with self.write(conflict=f"model {model.name!r} already exists") as s:
            if s.get(RegisteredModelRow, model.name) is not None:
                raise Conflict(f"model {model.name!r} already exists", field="name")
            s.add(
                RegisteredModelRow(
                    name=model.name,
                    description=model.description,
                    owner=model.owner,
                    status=model.status.value,
                    card=model.card.model_dump(),
                    tags=model.tags,
                    created_at_ms=model.created_at_ms,
                    updated_at_ms=model.updated_at_ms,
                )
            )
        return model

    @staticmethod
    def _model_row(s: Session, name: str, *, lock: bool = False) -> RegisteredModelRow:
        # lock: SELECT ... FOR UPDATE, so that writers of one model's versions queue on
        # PostgreSQL (SQLite's BEGIN IMMEDIATE already serialises every writer).
        row = s.get(RegisteredModelRow, name, with_for_update=lock or None)
        if row is None:
            raise NotFound(f"model {name!r} not found", field="name")
        return row

    def _model(self, s: Session, row: RegisteredModelRow) -> RegisteredModel:
        aliases = {
            a.alias: a.version
            for a in s.scalars(select(ModelAliasRow).where(ModelAliasRow.model_name == row.name))
        }
        latest = s.scalar(
            select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_name == row.name)
        )
        return RegisteredModel(
            name=row.name,
            description=row.description,
            owner=row.owner,
            status=ModelStatus(row.status),
            card=ModelCard.model_validate(row.card or {}),
            tags=dict(row.tags or {}),
            aliases=aliases,
            latest_version=latest,
            created_at_ms=row.created_at_ms,
            updated_at_ms=row.updated_at_ms,
        )

    def get_registered_model(self, name: str) -> RegisteredModel:
        """A model with its aliases; raises :class:`NotFound`."""
        with self.read() as s:
            return self._model(s, self._model_row(s, name))

    def list_registered_models(self, *, limit: int, offset: int) -> list[RegisteredModel]:
        """Models by name."""
        with self.read() as s:
            rows = s.scalars(
                select(RegisteredModelRow)
                .order_by(RegisteredModelRow.name)
                .limit(limit)
                .offset(offset)
            )
            return [self._model(s, r) for r in rows]

    def update_registered_model(self, name: str, changes: dict[str, Any]) -> RegisteredModel:
        """Change description, owner, status, card or tags."""
        unknown = set(changes) - _MODEL_FIELDS
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)}", field=sorted(unknown)[0])
        with self.write() as s:
            row = self._model_row(s, name)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at_ms = now_ms()
        return self.get_registered_model(name)

    def set_registered_model_tag(self, name: str, key: str, value: str | None) -> bool:
        """Set one tag of a model (``value`` None: remove it) in one locked transaction, so
        writers of different tags cannot undo each other. Whether the tag was there before."""
        with self.write() as s:
            row = self._model_row(s, name, lock=True)
            tags = dict(row.tags or {})
            had = key in tags
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = value
            if value is not None or had:
                row.tags = tags
                row.updated_at_ms = now_ms()
        return had

    # ---- versions -------------------------------------------------------------------
    def create_model_version(self, version: ModelVersion) -> ModelVersion:
        """Insert the next version number of ``version.name`` and return it."""
        with self.write(conflict=f"model {version.name!r} got a version concurrently; retry") as s:
            self._model_row(s, version.name, lock=True)  # max(version) + 1 without a race
            latest = s.scalar(
                select(func.max(ModelVersionRow.version)).where(
                    ModelVersionRow.model_name == version.name
                )
            )
            number = (latest or 0) + 1
            s.add(
                ModelVersionRow(
                    model_name=version.name,
                    version=number,
                    run_id=version.run_id,
                    artifact_path=version.artifact_path,
                    files=[f.model_dump() for f in version.files],
                    content_hash=version.content_hash,
                    flavor=version.flavor,
                    signature=version.signature,
                    input_example=version.input_example,
                    status=version.status.value,
                    description=version.description,
                    card=version.card.model_dump(),
                    tags=version.tags,
                    parents=version.parents,
                    created_by=version.created_by,
                    created_at_ms=version.created_at_ms,
                    updated_at_ms=version.updated_at_ms,
                )
            )
        return version.model_copy(update={"version": number})

    @staticmethod
    def _version_row(s: Session, name: str, version: int) -> ModelVersionRow:
        row = s.get(ModelVersionRow, (name, version))
        if row is None:
            RegistrySql._model_row(s, name)
            raise NotFound(f"model {name!r} has no version {version}", field="version")
        return row

    def _version(self, s: Session, row: ModelVersionRow) -> ModelVersion:
        aliases = s.scalars(
            select(ModelAliasRow.alias).where(
                ModelAliasRow.model_name == row.model_name, ModelAliasRow.version == row.version
            )
        )
        return ModelVersion(
            name=row.model_name,
            version=row.version,
            run_id=row.run_id,
            artifact_path=row.artifact_path,
            files=[ModelFile.model_validate(f) for f in row.files or []],
            content_hash=row.content_hash,
            flavor=row.flavor,
            signature=row.signature,
            input_example=row.input_example,
            status=ModelStatus(row.status),
            description=row.description,
            card=ModelCard.model_validate(row.card or {}),
            tags=dict(row.tags or {}),
            parents=list(row.parents or []),
            aliases=sorted(aliases),
            created_by=row.created_by,
            created_at_ms=row.created_at_ms,
            updated_at_ms=row.updated_at_ms,
        )

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        """One version; raises :class:`NotFound` naming the model or the version."""
        with self.read() as s:
            return self._version(s, self._version_row(s, name, version))

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, newest first."""
        with self.read() as s:
            self._model_row(s, name)
            rows = s.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_name == name)
                .order_by(ModelVersionRow.version.desc())
            )
            return [self._version(s, r) for r in rows]

    def update_model_version(
        self, name: str, version: int, changes: dict[str, Any]
    ) -> ModelVersion:
        """Change description, status, card or tags of a version."""
        unknown = set(changes) - _VERSION_FIELDS
        if unknown:
            raise InvalidInput(f"cannot change {sorted(unknown)}", field=sorted(unknown)[0])
        with self.write() as s:
            row = self._version_row(s, name, version)
            for key, value in changes.items():
                setattr(row, key, value)
            row.updated_at_ms = now_ms()
        return self.get_model_version(name, version)

    # ---- aliases ---------------------------------------------------------------------
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        actor: str | None,
        reason: str | None,
        expected: int | None | EllipsisType = ...,
    ) -> AliasEvent:
        """Point ``alias`` at ``version`` (None deletes it) and append the move to history.

        ``expected`` (compare-and-set): the version the alias must point at now (None: it
        must not exist); otherwise :class:`Conflict` and nothing changes.
        """
        with self.write() as s:
            return move_alias(
                s, name, alias, version, actor=actor, reason=reason, expected=expected
            )

    def find_alias(self, name: str, alias: str) -> int | None:
        """The version an alias points at, or None."""
        with self.read() as s:
            row = s.get(ModelAliasRow, (name, alias))
            return row.version if row is not None else None

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Alias moves of a model, oldest first."""
        with self.read() as s:
            self._model_row(s, name)
            query = select(AliasEventRow).where(AliasEventRow.model_name == name)
            if alias is not None:
                query = query.where(AliasEventRow.alias == alias)
            rows = s.scalars(query.order_by(AliasEventRow.at_ms, AliasEventRow.id))
            return [
                AliasEvent(
                    model_name=r.model_name,
                    alias=r.alias,
                    from_version=r.from_version,
                    to_version=r.to_version,
                    actor=r.actor,
                    reason=r.reason,
                    at_ms=r.at_ms,
                )
                for r in rows
            ]


def move_alias(
    s: Session,
    name: str,
    alias: str,
    version: int | None,
    *,
    actor: str | None,
    reason: str | None,
    expected: int | None | EllipsisType = ...,
) -> AliasEvent:
    """:meth:`RegistrySql.set_alias` inside the caller's transaction ``s``: a deployment's
    promotion moves the champion in the same transaction as its own state and records."""
    # The model row locked first (PostgreSQL), so two compare-and-sets of one
    # model's alias queue and the second sees the first's move.
    RegistrySql._model_row(s, name, lock=expected is not ...)
    if version is not None:
        target = RegistrySql._version_row(s, name, version)
        if target.status == ModelStatus.ARCHIVED.value:  # checked under the same lock
            raise Conflict(
                f"models:/{name}/{version} is archived; it cannot take alias {alias!r}",
                field="version",
            )
    row = s.get(ModelAliasRow, (name, alias))
    previous = row.version if row is not None else None
    if expected is not ... and previous != expected:
        raise Conflict(
            f"alias {alias!r} of model {name!r} points at {previous}, not the expected "
            f"{expected}: it was moved concurrently",
            field="alias",
            current=previous,
            expected=expected,
        )
    if version is None and row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
    at = now_ms()
    if version is None:
        s.delete(row)
    elif row is None:
        s.add(
            ModelAliasRow(
                model_name=name,
                alias=alias,
                version=version,
                updated_by=actor,
                updated_at_ms=at,
            )
        )
    else:
        row.version, row.updated_by, row.updated_at_ms = version, actor, at
    event = AliasEventRow(
        model_name=name,
        alias=alias,
        from_version=previous,
        to_version=version,
        actor=actor,
        reason=reason,
        at_ms=at,
    )
    s.add(event)
    return AliasEvent(
        model_name=name,
        alias=alias,
        from_version=previous,
        to_version=version,
        actor=actor,
        reason=reason,
        at_ms=at,
    )
