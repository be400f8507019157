"""Tracking and dataset calls of :class:`~keel.client._http.HttpTransport`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keel._models import Page
from keel.client._http_base import HttpBase, q
from keel.store.artifacts import iter_files, normalize_artifact_path
from keel.tracking.models import ArtifactFile, DatasetVersion, Experiment, Metric, Run, RunInput

__all__ = ["HttpTracking"]


class HttpTracking(HttpBase):
    """Experiments, runs, metrics, artifacts and datasets over the REST API."""

    def create_experiment(
        self, name: str, description: str | None, tags: Mapping[str, str]
    ) -> Experiment:
        body = {"name": name, "description": description, "tags": dict(tags)}
        return self._call("POST", "/v1/experiments", Experiment, json=body)

    def get_experiment(self, id_or_name: str) -> Experiment:
        return self._call("GET", f"/v1/experiments/{q(id_or_name)}", Experiment)

    def list_experiments(self, max_results: int, page_token: str | None) -> Page[Experiment]:
        params = {"max_results": max_results, **({"page_token": page_token} if page_token else {})}
        return self._call("GET", "/v1/experiments", Page[Experiment], params=params)

    def create_run(self, experiment: str, **fields: Any) -> Run:
        body = {"experiment": experiment, **{k: v for k, v in fields.items() if v is not None}}
        if "params" in body:
            body["params"] = {k: str(v) for k, v in body["params"].items()}
        return self._call("POST", "/v1/runs", Run, json=body)

    def get_run(self, run_id: str) -> Run:
        return self._call("GET", f"/v1/runs/{q(run_id)}", Run)

    def end_run(self, run_id: str, status: str) -> Run:
        return self._call("POST", f"/v1/runs/{q(run_id)}/end", Run, json={"status": status})

    def finish_run(self, run_id: str, status: str) -> None:
        self._request("POST", f"/v1/runs/{q(run_id)}/end", json={"status": status})

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self._request("POST", f"/v1/runs/{q(run_id)}/metrics", json=self._json(metric))

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Mapping[str, object],
        tags: Mapping[str, str],
    ) -> None:
        body = {
            "metrics": [self._json(m) for m in metrics],
            "params": {k: str(v) for k, v in params.items()},
            "tags": dict(tags),
        }
        self._request("POST", f"/v1/runs/{q(run_id)}/batch", json=body)

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        url = f"/v1/runs/{q(run_id)}/metrics/{quote(key)}/history"
        return self._call_list("GET", url, Metric)

    def search_runs(
        self,
        experiments: Sequence[str],
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[Run]:
        body = {
            "experiments": list(experiments),
            "filter": filter,
            "order_by": list(order_by),
            "max_results": max_results,
            "page_token": page_token,
        }
        return self._call("POST", "/v1/runs/search", Page[Run], json=body)

    def log_input(self, run_id: str, item: RunInput) -> Run:
        return self._call("POST", f"/v1/runs/{q(run_id)}/inputs", Run, json=self._json(item))

    def upload_artifacts(
        self, run_id: str, directory: Path, artifact_path: str
    ) -> list[ArtifactFile]:
        prefix = (
            normalize_artifact_path(artifact_path, field="artifact_path") if artifact_path else ""
        )
        uploaded = []
        for relative, file in iter_files(Path(directory)):
            path = f"{prefix}/{relative}" if prefix else relative
            url = f"/v1/runs/{q(run_id)}/artifacts/{quote(path)}"
            uploaded.append(self._call("PUT", url, ArtifactFile, content=file.read_bytes()))
        return uploaded

    def list_artifacts(self, run_id: str, prefix: str | None) -> list[ArtifactFile]:
        params = {"prefix": prefix} if prefix else {}
        url = f"/v1/runs/{q(run_id)}/artifacts"
        return self._call_list("GET", url, ArtifactFile, params=params)

    def download_artifact(self, run_id: str, path: str, destination: Path) -> Path:
        response = self._request("GET", f"/v1/runs/{q(run_id)}/artifacts/{quote(path)}")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(response.content)
        return destination

    # ---- datasets -----------------------------------------------------------------------------
    def register_dataset(
        self, name: str, data: bytes, fmt: str, description: str | None, source_uri: str | None
    ) -> DatasetVersion:
        params = {"format": fmt}
        params.update(
            {k: v for k, v in (("description", description), ("source_uri", source_uri)) if v}
        )
        url = f"/v1/datasets/{q(name)}/versions"
        return self._call("POST", url, DatasetVersion, content=data, params=params)

    def get_dataset(self, name: str, version: int | None) -> DatasetVersion:
        url = f"/v1/datasets/{q(name)}/versions/{version if version is not None else 'latest'}"
        return self._call("GET", url, DatasetVersion)

    def get_dataset_by_hash(self, content_hash: str) -> DatasetVersion:
        return self._call("GET", f"/v1/datasets/by-hash/{q(content_hash)}", DatasetVersion)

    def list_datasets(self, name: str | None) -> list[DatasetVersion]:
        return self._call_list(
            "GET", "/v1/datasets", DatasetVersion, params={"name": name} if name else {}
        )

    def dataset_bytes(self, item: DatasetVersion) -> bytes:
        url = f"/v1/datasets/{q(item.name)}/versions/{item.version}/data"
        return self._request("GET", url).content
