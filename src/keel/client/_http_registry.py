"""Model registry calls of :class:`~keel.client._http.HttpTransport`."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keel._models import Page
from keel.client._http_base import HttpBase, q
from keel.errors import KeelError
from keel.registry.models import AliasEvent, Lineage, ModelVersion, RegisteredModel
from keel.store.artifacts import normalize_artifact_path

__all__ = ["HttpRegistry"]


class HttpRegistry(HttpBase):
    """Models, versions, aliases, lineage and version downloads over the REST API."""

    def create_model(self, name: str, **fields: Any) -> RegisteredModel:
        body = {"name": name, **{k: self._json(v) for k, v in fields.items() if v is not None}}
        return self._call("POST", "/v1/models", RegisteredModel, json=body)

    def get_model(self, name: str) -> RegisteredModel:
        return self._call("GET", f"/v1/models/{q(name)}", RegisteredModel)

    def list_models(self, max_results: int, page_token: str | None) -> Page[RegisteredModel]:
        params = {"max_results": max_results, **({"page_token": page_token} if page_token else {})}
        return self._call("GET", "/v1/models", Page[RegisteredModel], params=params)

    def update_model(self, name: str, **changes: Any) -> RegisteredModel:
        body = {k: self._json(v) for k, v in changes.items() if v is not None}
        return self._call("PATCH", f"/v1/models/{q(name)}", RegisteredModel, json=body)

    def create_version(
        self, name: str, run_id: str, artifact_path: str, **fields: Any
    ) -> ModelVersion:
        fields.pop("created_by", None)  # the server records the authenticated caller
        body = {
            "run_id": run_id,
            "artifact_path": artifact_path,
            **{k: self._json(v) for k, v in fields.items() if v is not None},
        }
        return self._call("POST", f"/v1/models/{q(name)}/versions", ModelVersion, json=body)

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self._call("GET", f"/v1/models/{q(name)}/versions/{version}", ModelVersion)

    def list_versions(self, name: str) -> list[ModelVersion]:
        return self._call_list("GET", f"/v1/models/{q(name)}/versions", ModelVersion)

    def update_version(self, name: str, version: int, **changes: Any) -> ModelVersion:
        body = {k: self._json(v) for k, v in changes.items() if v is not None}
        url = f"/v1/models/{q(name)}/versions/{version}"
        return self._call("PATCH", url, ModelVersion, json=body)

    def resolve(self, ref: str) -> ModelVersion:
        return self._call("GET", "/v1/models/resolve", ModelVersion, params={"ref": ref})

    def set_alias(self, name: str, alias: str, version: int, reason: str | None) -> AliasEvent:
        url = f"/v1/models/{q(name)}/aliases/{q(alias)}"
        return self._call("PUT", url, AliasEvent, json={"version": version, "reason": reason})

    def delete_alias(self, name: str, alias: str) -> AliasEvent:
        return self._call("DELETE", f"/v1/models/{q(name)}/aliases/{q(alias)}", AliasEvent)

    def alias_history(self, name: str, alias: str | None) -> list[AliasEvent]:
        params = {"alias": alias} if alias else {}
        url = f"/v1/models/{q(name)}/alias-history"
        return self._call_list("GET", url, AliasEvent, params=params)

    def lineage(self, name: str, version: int) -> Lineage:
        return self._call("GET", f"/v1/models/{q(name)}/versions/{version}/lineage", Lineage)

    def model_dir(self, item: ModelVersion) -> Path:
        """Download the version's files once into the local cache, checking each sha256."""
        target = self.cache_dir / item.content_hash
        if (target / "keel_model.json").is_file():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".download-"))
        try:
            for f in item.files:
                url = f"/v1/models/{q(item.name)}/versions/{item.version}/files/{quote(f.path)}"
                data = self._request("GET", url).content
                if hashlib.sha256(data).hexdigest() != f.sha256:
                    raise KeelError(f"{item.uri} file {f.path} failed its sha256 check")
                local = staging / normalize_artifact_path(f.path)
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(data)
            try:
                os.replace(staging, target)
            except OSError:
                pass  # another process downloaded it first
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target
