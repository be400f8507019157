"""The operations a :class:`~keel.client.Client` needs, behind two transports.

``LocalTransport`` calls the domain services in-process (embedded SQLite, no
server); ``HttpTransport`` calls the REST API. Both raise the same
:mod:`keel.errors` exceptions, so code moves between them unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel._models import Page
from keel.automation.job_models import Job, Schedule
from keel.client._transport_ops import OpsTransport
from keel.decisions.models import Decision
from keel.decisions.prevention import ResolveRequest
from keel.deploy.models import Deployment
from keel.monitoring.models import Monitor, MonitorRun, MonitorSpec, SavedMonitor
from keel.registry.models import AliasEvent, Lineage, ModelVersion, RegisteredModel
from keel.tracking.models import ArtifactFile, DatasetVersion, Experiment, Metric, Run, RunInput

# Only for annotations: importing pandas or the feature store here would make every
# client (and every CLI command) pay for them (#15.14).
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.deploy.replay import ReplayRequest
    from keel.features.definitions import Definitions
    from keel.features.models import Plan, StoredDefinition
    from keel.serving.interface import Target

__all__ = ["Transport"]


class Transport(OpsTransport, ABC):
    """Abstract transport; every method maps to one service call (more in OpsTransport)."""

    @abstractmethod
    def create_experiment(
        self, name: str, description: str | None, tags: Mapping[str, str]
    ) -> Experiment: ...

    @abstractmethod
    def get_experiment(self, id_or_name: str) -> Experiment: ...

    @abstractmethod
    def list_experiments(self, max_results: int, page_token: str | None) -> Page[Experiment]: ...

    @abstractmethod
    def create_run(self, experiment: str, **fields: Any) -> Run: ...

    @abstractmethod
    def get_run(self, run_id: str) -> Run: ...

    @abstractmethod
    def end_run(self, run_id: str, status: str) -> Run: ...

    @abstractmethod
    def finish_run(self, run_id: str, status: str) -> None: ...

    @abstractmethod
    def log_metric(self, run_id: str, metric: Metric) -> None: ...

    @abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Mapping[str, object],
        tags: Mapping[str, str],
    ) -> None: ...

    @abstractmethod
    def metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    @abstractmethod
    def search_runs(
        self,
        experiments: Sequence[str],
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[Run]: ...

    @abstractmethod
    def log_input(self, run_id: str, item: RunInput) -> Run: ...

    @abstractmethod
    def upload_artifacts(
        self, run_id: str, directory: Path, artifact_path: str
    ) -> list[ArtifactFile]: ...

    @abstractmethod
    def list_artifacts(self, run_id: str, prefix: str | None) -> list[ArtifactFile]: ...

    @abstractmethod
    def download_artifact(self, run_id: str, path: str, destination: Path) -> Path: ...

    @abstractmethod
    def register_dataset(
        self, name: str, data: bytes, fmt: str, description: str | None, source_uri: str | None
    ) -> DatasetVersion: ...

    @abstractmethod
    def get_dataset(self, name: str, version: int | None) -> DatasetVersion: ...

    @abstractmethod
    def get_dataset_by_hash(self, content_hash: str) -> DatasetVersion: ...

    @abstractmethod
    def list_datasets(self, name: str | None) -> list[DatasetVersion]: ...

    @abstractmethod
    def dataset_bytes(self, item: DatasetVersion) -> bytes: ...

    @abstractmethod
    def create_model(self, name: str, **fields: Any) -> RegisteredModel: ...

    @abstractmethod
    def get_model(self, name: str) -> RegisteredModel: ...

    @abstractmethod
    def list_models(self, max_results: int, page_token: str | None) -> Page[RegisteredModel]: ...

    @abstractmethod
    def update_model(self, name: str, **changes: Any) -> RegisteredModel: ...

    @abstractmethod
    def create_version(
        self, name: str, run_id: str, artifact_path: str, **fields: Any
    ) -> ModelVersion: ...

    @abstractmethod
    def get_version(self, name: str, version: int) -> ModelVersion: ...

    @abstractmethod
    def list_versions(self, name: str) -> list[ModelVersion]: ...

    @abstractmethod
    def update_version(self, name: str, version: int, **changes: Any) -> ModelVersion: ...

    @abstractmethod
    def resolve(self, ref: str) -> ModelVersion: ...

    @abstractmethod
    def set_alias(self, name: str, alias: str, version: int, reason: str | None) -> AliasEvent: ...

    @abstractmethod
    def delete_alias(self, name: str, alias: str) -> AliasEvent: ...

    @abstractmethod
    def alias_history(self, name: str, alias: str | None) -> list[AliasEvent]: ...

    @abstractmethod
    def lineage(self, name: str, version: int) -> Lineage: ...

    @abstractmethod
    def model_dir(self, item: ModelVersion) -> Path: ...

    # ---- monitoring --------------------------------------------------------------------------
    @abstractmethod
    def submit_feedback(self, items: list[dict[str, Any]]) -> dict[str, Any]: ...

    @abstractmethod
    def create_monitor(self, spec: MonitorSpec, drop_resolution_rules: bool) -> SavedMonitor: ...

    @abstractmethod
    def get_monitor(self, name: str) -> Monitor: ...

    @abstractmethod
    def list_monitors(self) -> list[Monitor]: ...

    @abstractmethod
    def delete_monitor(self, name: str) -> None: ...

    @abstractmethod
    def run_monitor(
        self, name: str, window_end_ms: int | None, as_of_ms: int | None
    ) -> MonitorRun: ...

    @abstractmethod
    def monitor_runs(self, name: str, limit: int) -> list[MonitorRun]: ...

    @abstractmethod
    def monitor_run(self, name: str, run_id: str) -> MonitorRun: ...

    @abstractmethod
    def monitor_report(self, name: str, run_id: str) -> str: ...

    @abstractmethod
    def monitor_diagnosis(self, name: str, run_id: str, slice_by: list[str]) -> dict[str, Any]: ...

    # ---- jobs --------------------------------------------------------------------------------
    @abstractmethod
    def list_jobs(self, status: str | None, kind: str | None, limit: int) -> list[Job]: ...

    @abstractmethod
    def get_job(self, job_id: str) -> Job: ...

    @abstractmethod
    def cancel_job(self, job_id: str) -> Job: ...

    @abstractmethod
    def list_schedules(self) -> list[Schedule]: ...

    @abstractmethod
    def schedule_monitor(self, name: str, cron: str | None) -> Schedule: ...

    @abstractmethod
    def unschedule_monitor(self, name: str) -> None: ...

    # ---- deployments and decisions -----------------------------------------------------------
    @abstractmethod
    def create_deployment(self, policy: dict[str, Any]) -> Deployment: ...

    @abstractmethod
    def get_deployment(self, name: str) -> Deployment: ...

    @abstractmethod
    def list_deployments(self, model: str | None) -> list[Deployment]: ...

    @abstractmethod
    def deployment_action(
        self, name: str, action: str, reason: str | None, arm: str | None
    ) -> Deployment: ...

    @abstractmethod
    def replay_deployment(self, name: str, request: ReplayRequest) -> dict[str, Any]: ...

    @abstractmethod
    def deployment_decisions(self, name: str, limit: int) -> list[Decision]: ...

    @abstractmethod
    def decisions(
        self,
        model: str | None,
        kind: str | None,
        since: str | None,
        deployment: str | None,
        limit: int,
        open: bool | None = None,
    ) -> list[Decision]: ...

    @abstractmethod
    def get_decision(self, decision_id: int) -> Decision: ...

    @abstractmethod
    def resolve_decision(self, decision_id: int, request: ResolveRequest) -> Decision:
        """Resolve an incident with its prevention; the ``resolution`` record."""

    @abstractmethod
    def record_gate_decision(self, name: str, version: int, run_id: str) -> Decision:
        """The ``gate`` decision of the validation report kept on run ``run_id``."""

    # ---- features ----------------------------------------------------------------------------
    @abstractmethod
    def apply_features(self, definitions: Definitions, prune: bool, dry_run: bool) -> Plan: ...

    @abstractmethod
    def feature_definitions(self, kind: str | None) -> list[StoredDefinition]: ...

    @abstractmethod
    def historical_features(
        self,
        entity: pd.DataFrame | pa.Table,
        features: list[str] | str,
        timestamp_column: str,
        full_names: bool,
        engine: str | None,
    ) -> pa.Table:
        """The feature columns only, one row per entity row, in order."""

    @abstractmethod
    def online_features(
        self, rows: list[dict[str, Any]], features: list[str] | str, full_names: bool
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    def push_features(self, view: str, rows: pd.DataFrame) -> int: ...

    @abstractmethod
    def materialize_features(
        self, start: str | None, end: str, views: list[str] | None
    ) -> dict[str, int]: ...

    @abstractmethod
    def predict(self, target: Target, body: bytes) -> dict[str, Any]:
        """A predict request's response body (``Client.predict``)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
