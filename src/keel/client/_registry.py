"""Registry half of :class:`keel.Client`: log, register, alias, load and import models."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel._models import Page
from keel.registry.models import (
    AliasEvent,
    Lineage,
    ModelCard,
    ModelStatus,
    ModelVersion,
    RegisteredModel,
)
from keel.registry.uri import parse_model_ref
from keel.tracking.models import ArtifactFile

if TYPE_CHECKING:
    from keel.client._transport import Transport
    from keel.config import Settings

__all__ = ["RegistryMixin"]


class RegistryMixin:
    """Model registry methods; mixed into :class:`keel.Client`."""

    transport: Transport
    settings: Settings

    def log_model(
        self,
        run_id: str,
        model: object,
        artifact_path: str = "model",
        *,
        registered_name: str | None = None,
        input_example: Any = None,
        signature: dict[str, Any] | None = None,
        flavor: str | None = None,
        description: str | None = None,
        parents: Sequence[str] = (),
    ) -> ModelVersion | list[ArtifactFile]:
        """Save ``model`` (flavor inferred) with its signature and example under the run.

        Returns the new :class:`ModelVersion` when ``registered_name`` is given,
        else the stored files.
        """
        from keel.registry.packaging import save_model_dir

        with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
            save_model_dir(
                model, Path(tmp), flavor=flavor, input_example=input_example, signature=signature
            )
            files = self.transport.upload_artifacts(run_id, Path(tmp), artifact_path)
        if registered_name is None:
            return files
        return self.register_model(
            registered_name, run_id, artifact_path, description=description, parents=parents
        )

    def register_model(
        self,
        name: str,
        run_id: str,
        artifact_path: str = "model",
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        card: ModelCard | Mapping[str, Any] | None = None,
        parents: Sequence[str] = (),
    ) -> ModelVersion:
        """Register the model a run logged at ``artifact_path`` as the next version of ``name``."""
        return self.transport.create_version(
            name,
            run_id,
            artifact_path,
            description=description,
            tags=dict(tags or {}),
            card=ModelCard.model_validate(card or {}),
            parents=list(parents),
        )

    def create_model(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        card: ModelCard | Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:
        """Register a model name (``Conflict`` if taken)."""
        return self.transport.create_model(
            name,
            description=description,
            owner=owner,
            card=ModelCard.model_validate(card or {}),
            tags=dict(tags or {}),
        )

    def get_model(self, name: str) -> RegisteredModel:
        """A registered model with its aliases."""
        return self.transport.get_model(name)

    def list_models(
        self, max_results: int = 100, page_token: str | None = None
    ) -> Page[RegisteredModel]:
        """Registered models by name."""
        return self.transport.list_models(max_results, page_token)

    def update_model(self, name: str, **changes: Any) -> RegisteredModel:
        """Change ``description``, ``owner``, ``status``, ``card`` or ``tags`` of a model."""
        return self.transport.update_model(name, **changes)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        """One version of a model."""
        return self.transport.get_version(name, version)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        """Versions of a model, newest first."""
        return self.transport.list_versions(name)

    def update_model_version(self, name: str, version: int, **changes: Any) -> ModelVersion:
        """Change ``description``, ``status``, ``card`` or ``tags`` of a version."""
        return self.transport.update_version(name, version, **changes)

    def archive_model_version(self, name: str, version: int) -> ModelVersion:
        """Archive a version (it can no longer take an alias)."""
        return self.update_model_version(name, version, status=ModelStatus.ARCHIVED)

    def deprecate_model_version(self, name: str, version: int) -> ModelVersion:
        """Mark a version deprecated (still loadable, flagged in listings)."""
        return self.update_model_version(name, version, status=ModelStatus.DEPRECATED)

    def set_alias(
        self, name: str, alias: str, version: int, reason: str | None = None
    ) -> AliasEvent:
        """Point ``alias`` (e.g. ``champion``) at ``version``; the move is recorded."""
        return self.transport.set_alias(name, alias, version, reason)

    def delete_alias(self, name: str, alias: str) -> AliasEvent:
        """Remove an alias (recorded in its history)."""
        return self.transport.delete_alias(name, alias)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Who moved which alias, when, oldest first."""
        return self.transport.alias_history(name, alias)

    def lineage(self, name: str, version: int) -> Lineage:
        """Version → run → datasets (hashes) → code commit → parent versions."""
        return self.transport.lineage(name, version)

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``models:/name@alias``, ``models:/name/3`` or ``name`` refers to."""
        parse_model_ref(ref)  # fail fast on a malformed reference, before any I/O
        return self.transport.resolve(ref)

    def load_model(self, ref: str) -> Any:
        """Load ``models:/churn@champion`` (or ``/3``) as an object with ``predict``.

        Works for every flavor; raw pickles load only with ``KEEL_ALLOW_PICKLE=true``. When
        the version has a signature, a DataFrame passed to ``predict``/``predict_proba`` is
        checked and typed exactly as the serving gateway does it (column order, dtypes,
        ``category`` columns as categoricals); InvalidInput names a bad column.
        """
        from keel.registry.packaging import load_model_dir
        from keel.serving.validation import InputSpec

        item = self.resolve(ref)
        loaded = load_model_dir(
            self.transport.model_dir(item),
            allow_pickle=self.settings.allow_pickle,
            trusted_classes=self.settings.trusted_model_class_names,
        )
        if loaded.signature is not None:
            # A DataFrame is prepared as the gateway prepares a request: the signature's
            # column order and types, category columns as categoricals (#15.23).
            loaded.prepare_frame = InputSpec(loaded.signature).typed_frame
        return loaded

    def import_mlflow_model(
        self,
        path: str | Path,
        name: str,
        *,
        experiment: str = "mlflow-imports",
        description: str | None = None,
    ) -> ModelVersion:
        """Bring an MLflow model directory (``MLmodel`` file) into the registry as a new version.

        The model is converted to keel's format in a run of ``experiment`` tagged
        with its origin, then registered.
        """
        from keel.client._client import Client
        from keel.registry.mlflow_import import import_mlflow_model

        assert isinstance(self, Client)
        with tempfile.TemporaryDirectory(prefix="keel-mlflow-") as tmp:
            meta = import_mlflow_model(
                Path(path), Path(tmp), allow_pickle=self.settings.allow_pickle
            )
            origin = meta.get("imported_from") or {}
            with self.start_run(
                experiment,
                name=f"import {Path(path).name}",
                capture_env=False,
                tags={"keel.source": "mlflow", "mlflow.run_id": str(origin.get("run_id") or "")},
            ) as run:
                self.transport.upload_artifacts(run.id, Path(tmp), "model")
                return self.register_model(name, run.id, "model", description=description)
