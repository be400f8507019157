"""Registry use cases: models, versions from run artifacts, aliases, lineage, loading."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any

from keel._models import Page, decode_page_token, encode_page_token, now_ms, stored_int
from keel.errors import Conflict, InvalidInput, KeelError, NotFound
from keel.registry.models import (
    AliasEvent,
    Lineage,
    ModelCard,
    ModelFile,
    ModelStatus,
    ModelVersion,
    RegisteredModel,
)
from keel.registry.uri import ModelRef, check_alias, parse_model_ref
from keel.store.artifacts import ArtifactStore
from keel.store.sql import SqlStore
from keel.tracking.validation import check_name

__all__ = ["MODEL_META_FILE", "AliasListener", "ArchiveGuard", "RegistryService", "manifest_hash"]

log = logging.getLogger("keel.registry")

#: ``listener(model name, alias, version it now points at or None when deleted)``
AliasListener = Callable[[str, str, int | None], None]
ArchiveGuard = Callable[[str, int | None], None]

MODEL_META_FILE = "keel_model.json"
_VERSION_RETRIES = 5


def manifest_hash(files: Sequence[ModelFile]) -> str:
    """sha256 over the sorted ``path:sha256`` lines of a model's files (its identity)."""
    lines = "\n".join(f"{f.path}:{f.sha256}" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode()).hexdigest()


class RegistryService:
    """Registered models and versions over a :class:`SqlStore` and :class:`ArtifactStore`."""

    def __init__(self, store: SqlStore, artifacts: ArtifactStore, cache_dir: Path) -> None:
        self.store = store
        self.artifacts = artifacts
        self.cache_dir = Path(cache_dir)
        self._alias_listeners: list[AliasListener] = []
        self._archive_guards: list[ArchiveGuard] = []

    def add_alias_listener(self, listener: AliasListener) -> None:
        """Call ``listener(name, alias, version or None)`` after every alias move or delete.

        Listeners run in the thread that moved the alias, after the move committed; one
        that raises is logged and the others still run (the move stands). The serving
        gateway listens, so a move made through this process is served at once instead of
        at the next poll; ``keel.services`` adds one that tells other processes via Redis.
        """
        self._alias_listeners.append(listener)

    def remove_alias_listener(self, listener: AliasListener) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        if listener in self._alias_listeners:
            self._alias_listeners.remove(listener)

    def alias_moved(self, name: str, alias: str, version: int | None) -> None:
        """Run the alias listeners after a committed move (a deployment's promotion moves
        the champion in its own transaction, then calls this)."""
        for listener in list(self._alias_listeners):
            try:
                listener(name, alias, version)
            except Exception:  # the move is committed; a listener must not undo the answer
                log.exception("alias listener failed for %s@%s", name, alias)

    # ---- registered models -------------------------------------------------------
    def create_model(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        card: ModelCard | Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:
        """Register a model name; a taken name raises :class:`Conflict`."""
        stamp = now_ms()
        return self.store.create_registered_model(
            RegisteredModel(
                name=check_name(name),
                description=description,
                owner=owner,
                card=ModelCard.model_validate(card or {}),
                tags=dict(tags or {}),
                created_at_ms=stamp,
                updated_at_ms=stamp,
            )
        )

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases and latest version number."""
        return self.store.get_registered_model(name)

    def list_models(
        self, max_results: int = 100, page_token: str | None = None
    ) -> Page[RegisteredModel]:
        """Registered models by name, one page at a time."""
        if not 1 <= max_results <= 10_000:
            raise InvalidInput("max_results must be in 1..10000", field="max_results")
        offset = decode_page_token(page_token)
        items = self.store.list_registered_models(limit=max_results + 1, offset=offset)
        token = encode_page_token(offset + max_results) if len(items) > max_results else None
        return Page[RegisteredModel](items=items[:max_results], next_token=token)

    def update_model(self, name: str, **changes: Any) -> RegisteredModel:
        """Change description, owner, status (ACTIVE/DEPRECATED/ARCHIVED), card or tags."""
        checked = self._changes(changes)
        if checked.get("status") == ModelStatus.ARCHIVED.value:
            self._check_archive(name, None)
        return self.store.update_registered_model(name, checked)

    def set_model_tag(self, name: str, key: str, value: str | None) -> bool:
        """Set (``value`` None: remove) one tag of model ``name``, leaving its other tags as
        they are even under concurrent writers; whether the tag was there before."""
        return self.store.set_registered_model_tag(name, key, value)

    def add_archive_guard(self, guard: ArchiveGuard) -> None:
        """Call ``guard(name, version)`` before archiving a version (``version`` None: the
        whole model); a guard refuses by raising, e.g. :class:`Conflict` while a deployment
        serves the version. Added by ``keel.services`` so the registry imports no deploy code.
        """
        self._archive_guards.append(guard)

    def _check_archive(self, name: str, version: int | None) -> None:
        for guard in list(self._archive_guards):
            guard(name, version)

    # ---- versions -------------------------------------------------------------------
    def create_version(
        self,
        name: str,
        run_id: str,
        artifact_path: str = "model",
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        card: ModelCard | Mapping[str, Any] | None = None,
        parents: Sequence[str] = (),
        created_by: str | None = None,
        create_model: bool = True,
    ) -> ModelVersion:
        """Register the model logged under ``artifact_path`` of ``run_id`` as a new version.

        The run's files there must include ``keel_model.json`` (written by
        ``log_model``); its flavor, signature and input example are copied.
        """
        check_name(name)
        prefix = artifact_path.strip("/")
        files = self.store.list_artifacts(run_id, prefix or None)
        if not files:
            raise NotFound(f"run {run_id} has no files under {prefix!r}", field="artifact_path")
        strip = len(prefix) + 1 if prefix else 0
        model_files = [
            ModelFile(path=f.path[strip:], sha256=f.sha256, size_bytes=f.size_bytes) for f in files
        ]
        meta_file = next((f for f in model_files if f.path == MODEL_META_FILE), None)
        if meta_file is None:
            raise InvalidInput(
                f"{prefix or 'the run root'} has no {MODEL_META_FILE}; "
                "log the model with log_model",
                field="artifact_path",
            )
        meta = self._read_meta(meta_file)
        # here, not at the top: the flavor module imports numpy and pandas, which the CLI avoids
        from keel.registry.flavors.sklearn import refuse_unservable_sklearn

        stored = {f.path: f.sha256 for f in model_files}
        refuse_unservable_sklearn(meta, prefix, stored, self.artifacts.path)
        resolved_parents = [self.resolve(p).uri for p in parents]
        if create_model:
            try:
                self.store.get_registered_model(name)
            except NotFound:
                try:
                    self.create_model(name)
                except Conflict:
                    pass  # created concurrently: fine
        stamp = now_ms()
        draft = ModelVersion(
            name=name,
            version=0,
            run_id=run_id,
            artifact_path=prefix,
            files=model_files,
            content_hash=manifest_hash(model_files),
            flavor=str(meta.get("flavor", "unknown")),
            signature=meta.get("signature"),
            input_example=meta.get("input_example"),
            description=description,
            card=ModelCard.model_validate(card or {}),
            tags=dict(tags or {}),
            parents=resolved_parents,
            created_by=created_by,
            created_at_ms=stamp,
            updated_at_ms=stamp,
        )
        for attempt in range(_VERSION_RETRIES):
            try:
                return self.store.create_model_version(draft)
            except Conflict:
                if attempt == _VERSION_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _read_meta(self, meta_file: ModelFile) -> dict[str, Any]:
        try:
            meta = json.loads(self.artifacts.read_bytes(meta_file.sha256))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"{MODEL_META_FILE} is not valid JSON", field="artifact_path"
            ) from exc
        if not isinstance(meta, dict) or "flavor" not in meta:
            raise InvalidInput(f"{MODEL_META_FILE} names no flavor", field="artifact_path")
        return meta

    def get_version(self, name: str, version: int) -> ModelVersion:
        """One version; raises :class:`NotFound`, or InvalidInput naming ``version`` for a
        number outside 1..MAX_VERSION (which no version can have)."""
        return self.store.get_model_version(name, stored_int(version, "version"))

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Versions of a model, newest first."""
        return self.store.list_model_versions(name)

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version a reference names (``models:/m/3``, ``models:/m@champion``, ``m``)."""
        parsed = parse_model_ref(ref) if isinstance(ref, str) else ref
        if parsed.alias is not None:
            version = self.alias_version(parsed.name, parsed.alias)
            return self.store.get_model_version(parsed.name, version)
        if parsed.version is not None:
            return self.get_version(parsed.name, parsed.version)
        latest = self.store.get_registered_model(parsed.name).latest_version
        if latest is None:
            raise NotFound(f"model {parsed.name!r} has no versions", field="version")
        return self.store.get_model_version(parsed.name, latest)

    def alias_version(self, name: str, alias: str) -> int:
        """The version number ``name@alias`` points at (one read: the gateway calls this on
        every alias refresh); raises :class:`NotFound` naming the model or the alias."""
        version = self.store.find_alias(name, alias)
        if version is None:
            self.store.get_registered_model(name)  # NotFound naming an unknown model
            raise NotFound(f"model {name!r} has no alias {alias!r}", field="alias")
        return version

    def update_version(self, name: str, version: int, **changes: Any) -> ModelVersion:
        """Change description, status, card or tags of a version."""
        version = stored_int(version, "version")
        checked = self._changes(changes)
        if checked.get("status") == ModelStatus.ARCHIVED.value:
            self._check_archive(name, version)
        return self.store.update_model_version(name, version, checked)

    # ---- aliases ----------------------------------------------------------------------
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        actor: str | None = None,
        reason: str | None = None,
        expected: int | None | EllipsisType = ...,
    ) -> AliasEvent:
        """Point ``alias`` at ``version``; archived versions cannot take an alias.

        ``expected``: compare-and-set — the version the alias must point at now (None: no
        such alias yet); a concurrent move raises :class:`Conflict` (409) and changes nothing.
        """
        # a bad name is a 422 whatever the version's state; an archived version is refused
        # by the store, inside the transaction that moves the alias
        event = self.store.set_alias(
            name,
            check_alias(alias),
            stored_int(version, "version"),
            actor=actor,
            reason=reason,
            expected=expected,
        )
        self.alias_moved(name, alias, version)
        return event

    def delete_alias(
        self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None
    ) -> AliasEvent:
        """Remove an alias (recorded in its history)."""
        event = self.store.set_alias(name, check_alias(alias), None, actor=actor, reason=reason)
        self.alias_moved(name, alias, None)
        return event

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Who moved which alias when, oldest first."""
        return self.store.alias_history(name, check_alias(alias) if alias else None)

    # ---- lineage and loading -------------------------------------------------------------
    def lineage(self, name: str, version: int, *, _seen: frozenset[str] = frozenset()) -> Lineage:
        """Version → run → datasets (hashes) → code commit → parent versions (recursively)."""
        item = self.get_version(name, version)
        run = self.store.get_run(item.run_id) if item.run_id else None
        seen = _seen | {item.uri}
        parents = []
        for parent in item.parents:
            if parent in seen:
                continue  # a cycle cannot be created through the API, but stay safe
            ref = parse_model_ref(parent)
            if ref.version is not None:
                parents.append(self.lineage(ref.name, ref.version, _seen=seen))
        return Lineage(
            model=name,
            version=version,
            content_hash=item.content_hash,
            run=None
            if run is None
            else {
                "id": run.id,
                "experiment_id": run.experiment_id,
                "name": run.name,
                "status": run.status.value,
                "params": run.params,
                "metrics": run.metrics,
                "reproducibility": run.reproducibility(),
            },
            datasets=[i.model_dump(by_alias=True) for i in run.inputs] if run else [],
            code_commit=run.code_commit if run else None,
            code_dirty=run.code_dirty if run else None,
            environment_hash=run.environment_hash if run else None,
            parents=parents,
        )

    def model_dir(self, item: ModelVersion) -> Path:
        """A local directory holding the version's files (unpacked once, by content hash).

        The version pins the sha256 of each file it was registered from; every blob is
        checked against it while unpacking, so a changed blob raises :class:`KeelError`
        instead of being loaded.
        """
        if manifest_hash(item.files) != item.content_hash:
            raise KeelError(
                f"{item.uri}: its files do not match its content hash {item.content_hash}",
                field="version",
            )
        target = self.cache_dir / item.content_hash
        if (target / MODEL_META_FILE).is_file():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".unpack-"))
        try:
            for f in item.files:
                self.artifacts.materialize(f.sha256, staging / f.path)
            try:
                os.replace(staging, target)
            except OSError:  # another process unpacked it first
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    @staticmethod
    def _changes(changes: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key == "status":
                try:
                    value = ModelStatus(value).value
                except ValueError as exc:
                    raise InvalidInput(f"unknown status {value!r}", field="status") from exc
            elif key == "card":
                value = ModelCard.model_validate(value).model_dump()
            elif key == "tags":
                value = {str(k): str(v) for k, v in dict(value).items()}
            out[key] = value
        return out
