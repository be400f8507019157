"""In-process transport: the SDK calls the domain services directly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from keel._models import Page
from keel.automation.job_models import Job, Schedule
from keel.client._local_errors import full_disk_as_served
from keel.client._ops_local import LocalOps
from keel.client._transport import Transport
from keel.client._user import local_user
from keel.decisions.models import Decision
from keel.decisions.prevention import ResolveRequest
from keel.deploy.models import Deployment
from keel.features._engine import engine_from
from keel.features.definitions import Definitions
from keel.features.models import Plan, StoredDefinition
from keel.monitoring.models import Monitor, MonitorRun, MonitorSpec, SavedMonitor
from keel.registry.models import AliasEvent, Lineage, ModelVersion, RegisteredModel
from keel.services import Services
from keel.tracking.models import ArtifactFile, DatasetVersion, Experiment, Metric, Run, RunInput

if TYPE_CHECKING:
    from keel.client._embedded import EmbeddedGateway
    from keel.deploy.replay import ReplayRequest
    from keel.serving.interface import Target

__all__ = ["LocalTransport"]


@full_disk_as_served
class LocalTransport(LocalOps, Transport):
    """Embedded keel: SQLite (or the configured database) in this process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.user = local_user()
        self._gateway: EmbeddedGateway | None = None

    def __repr__(self) -> str:
        return f"LocalTransport({self.services.settings.resolved_database_url!r})"

    def create_experiment(
        self, name: str, description: str | None, tags: Mapping[str, str]
    ) -> Experiment:
        return self.services.tracking.create_experiment(name, description, tags)

    def get_experiment(self, id_or_name: str) -> Experiment:
        return self.services.tracking.get_experiment(id_or_name)

    def list_experiments(self, max_results: int, page_token: str | None) -> Page[Experiment]:
        return self.services.tracking.list_experiments(max_results, page_token)

    def create_run(self, experiment: str, **fields: Any) -> Run:
        fields.setdefault("user", self.user)
        return self.services.tracking.create_run(experiment, **fields)

    def get_run(self, run_id: str) -> Run:
        return self.services.tracking.get_run(run_id)

    def end_run(self, run_id: str, status: str) -> Run:
        return self.services.tracking.end_run(run_id, status)

    def finish_run(self, run_id: str, status: str) -> None:
        self.services.tracking.finish_run(run_id, status)

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self.services.tracking.log_batch(run_id, metrics=[metric])

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Mapping[str, object],
        tags: Mapping[str, str],
    ) -> None:
        self.services.tracking.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.services.tracking.metric_history(run_id, key)

    def search_runs(
        self,
        experiments: Sequence[str],
        filter: str | None,
        order_by: Sequence[str],
        max_results: int,
        page_token: str | None,
    ) -> Page[Run]:
        return self.services.tracking.search_runs(
            experiments, filter, order_by, max_results, page_token
        )

    def log_input(self, run_id: str, item: RunInput) -> Run:
        return self.services.tracking.log_input(run_id, item)

    def upload_artifacts(
        self, run_id: str, directory: Path, artifact_path: str
    ) -> list[ArtifactFile]:
        return self.services.tracking.log_artifact_dir(run_id, directory, artifact_path)

    def list_artifacts(self, run_id: str, prefix: str | None) -> list[ArtifactFile]:
        return self.services.tracking.list_artifacts(run_id, prefix)

    def download_artifact(self, run_id: str, path: str, destination: Path) -> Path:
        item, local = self.services.tracking.artifact_file(run_id, path)
        self.services.artifacts.materialize(item.sha256, destination)
        return destination

    def register_dataset(
        self, name: str, data: bytes, fmt: str, description: str | None, source_uri: str | None
    ) -> DatasetVersion:
        return self.services.datasets.register_bytes(
            name, data, fmt, description=description, source_uri=source_uri
        )

    def get_dataset(self, name: str, version: int | None) -> DatasetVersion:
        return self.services.datasets.get(name, version)

    def get_dataset_by_hash(self, content_hash: str) -> DatasetVersion:
        return self.services.datasets.get_by_hash(content_hash)

    def list_datasets(self, name: str | None) -> list[DatasetVersion]:
        return self.services.datasets.list(name)

    def dataset_bytes(self, item: DatasetVersion) -> bytes:
        return self.services.datasets.path(item).read_bytes()

    def create_model(self, name: str, **fields: Any) -> RegisteredModel:
        return self.services.registry.create_model(name, **fields)

    def get_model(self, name: str) -> RegisteredModel:
        return self.services.registry.get_model(name)

    def list_models(self, max_results: int, page_token: str | None) -> Page[RegisteredModel]:
        return self.services.registry.list_models(max_results, page_token)

    def update_model(self, name: str, **changes: Any) -> RegisteredModel:
        return self.services.registry.update_model(name, **changes)

    def create_version(
        self, name: str, run_id: str, artifact_path: str, **fields: Any
    ) -> ModelVersion:
        fields.setdefault("created_by", self.user)
        return self.services.registry.create_version(name, run_id, artifact_path, **fields)

    def get_version(self, name: str, version: int) -> ModelVersion:
        return self.services.registry.get_version(name, version)

    def list_versions(self, name: str) -> list[ModelVersion]:
        return self.services.registry.list_versions(name)

    def update_version(self, name: str, version: int, **changes: Any) -> ModelVersion:
        return self.services.registry.update_version(name, version, **changes)

    def resolve(self, ref: str) -> ModelVersion:
        return self.services.registry.resolve(ref)

    def set_alias(self, name: str, alias: str, version: int, reason: str | None) -> AliasEvent:
        return self.services.registry.set_alias(
            name, alias, version, actor=self.user, reason=reason
        )

    def delete_alias(self, name: str, alias: str) -> AliasEvent:
        return self.services.registry.delete_alias(name, alias, actor=self.user)

    def alias_history(self, name: str, alias: str | None) -> list[AliasEvent]:
        return self.services.registry.alias_history(name, alias)

    def lineage(self, name: str, version: int) -> Lineage:
        return self.services.registry.lineage(name, version)

    def model_dir(self, item: ModelVersion) -> Path:
        return self.services.registry.model_dir(item)

    # ---- monitoring ----------------------------------------------------------------------------
    def submit_feedback(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self.services.feedback.submit(items).__dict__)

    def create_monitor(self, spec: MonitorSpec, drop_resolution_rules: bool) -> SavedMonitor:
        return self.services.monitors.create(
            spec, actor=self.user, drop_resolution_rules=drop_resolution_rules
        )

    def get_monitor(self, name: str) -> Monitor:
        return self.services.monitors.get(name)

    def list_monitors(self) -> list[Monitor]:
        return self.services.monitors.list_monitors()

    def delete_monitor(self, name: str) -> None:
        self.services.monitors.delete(name)

    def run_monitor(self, name: str, window_end_ms: int | None, as_of_ms: int | None) -> MonitorRun:
        return self.services.monitors.run(name, window_end=window_end_ms, as_of=as_of_ms)

    def monitor_runs(self, name: str, limit: int) -> list[MonitorRun]:
        return self.services.monitors.runs(name, limit)

    def monitor_run(self, name: str, run_id: str) -> MonitorRun:
        return self.services.monitors.get_run(name, run_id)

    def monitor_report(self, name: str, run_id: str) -> str:
        from keel.ui.monitor_report import render_run

        run = self.services.monitors.get_run(name, run_id)
        return render_run(run, *self.services.monitors.samples(run))

    def monitor_diagnosis(self, name: str, run_id: str, slice_by: list[str]) -> dict[str, Any]:
        return self.services.monitors.diagnose(name, run_id, slice_by=slice_by).as_dict()

    # ---- jobs --------------------------------------------------------------------------------
    def list_jobs(self, status: str | None, kind: str | None, limit: int) -> list[Job]:
        return self.services.jobs.list_jobs(status=status, kind=kind, limit=limit)

    def get_job(self, job_id: str) -> Job:
        return self.services.jobs.get(job_id)

    def cancel_job(self, job_id: str) -> Job:
        return self.services.jobs.cancel(job_id, actor=self.user)

    def list_schedules(self) -> list[Schedule]:
        return self.services.jobs.list_schedules()

    def schedule_monitor(self, name: str, cron: str | None) -> Schedule:
        from keel.monitoring.cadence import schedule_monitor

        return schedule_monitor(self.services, name, cron, self.user)

    def unschedule_monitor(self, name: str) -> None:
        self.services.jobs.unschedule_monitor(name)

    # ---- deployments and decisions ---------------------------------------------------------------
    def create_deployment(self, policy: dict[str, Any]) -> Deployment:
        return self.services.deployments.create(policy, actor=self.user)

    def get_deployment(self, name: str) -> Deployment:
        return self.services.deployments.get(name)

    def list_deployments(self, model: str | None) -> list[Deployment]:
        return self.services.deployments.list(model)

    def deployment_action(
        self, name: str, action: str, reason: str | None, arm: str | None
    ) -> Deployment:
        deployments = self.services.deployments
        if action == "promote":
            return deployments.promote(name, self.user, arm=arm, reason=reason)
        if action == "rollback":
            return deployments.rollback(name, reason, self.user)
        if action == "pause":
            return deployments.pause(name, self.user, reason)
        if action == "switch":
            return deployments.switch(name, self.user, reason)
        return deployments.resume(name, self.user, reason)

    def replay_deployment(self, name: str, request: ReplayRequest) -> dict[str, Any]:
        return self.services.deployments.replay(
            name, request.versions, since=request.since, limit=request.limit,
            synthetic=request.synthetic, seed=request.seed,
        )  # fmt: skip

    def deployment_decisions(self, name: str, limit: int) -> list[Decision]:
        return self.services.deployments.decisions(name, limit)

    def decisions(
        self,
        model: str | None,
        kind: str | None,
        since: str | None,
        deployment: str | None,
        limit: int,
        open: bool | None = None,
    ) -> list[Decision]:
        return self.services.decisions.query(
            model=model, kind=kind, since=since, deployment=deployment, limit=limit, open=open
        )

    def get_decision(self, decision_id: int) -> Decision:
        return self.services.decisions.get(decision_id)

    def resolve_decision(self, decision_id: int, request: ResolveRequest) -> Decision:
        from keel.decisions.prevention import resolve_incident

        svc = self.services
        actor = self.user or "sdk"  # no OS user name: still an actor on the record
        return resolve_incident(svc.decisions, svc.monitors, decision_id, request, actor)

    def record_gate_decision(self, name: str, version: int, run_id: str) -> Decision:
        from keel.automation.gates.decision import VALIDATE_ACTOR, record_gate_decision

        svc = self.services
        actor = self.user or VALIDATE_ACTOR  # the author, as the HTTP SDK's X-Keel-User says
        return record_gate_decision(
            svc.tracking, svc.registry, svc.decisions, name, version, run_id, actor
        )

    # ---- features ------------------------------------------------------------------------------
    def apply_features(self, definitions: Definitions, prune: bool, dry_run: bool) -> Plan:
        if dry_run:
            return self.services.features.plan(definitions, prune=prune)
        return self.services.features.apply(definitions, prune=prune)

    def feature_definitions(self, kind: str | None) -> list[StoredDefinition]:
        return self.services.features.list_definitions(kind)

    def historical_features(
        self,
        entity: pd.DataFrame | pa.Table,
        features: list[str] | str,
        timestamp_column: str,
        full_names: bool,
        engine: str | None,
    ) -> pa.Table:
        table: pa.Table = self.services.features.get_historical_features(
            entity,
            features,
            timestamp_column=timestamp_column,
            full_names=full_names,
            as_arrow=True,
            features_only=True,
            engine=engine_from(engine, self.services.settings.features_engine),
        )
        return table

    def online_features(
        self, rows: list[dict[str, Any]], features: list[str] | str, full_names: bool
    ) -> list[dict[str, Any]]:
        return self.services.features.get_online_features(rows, features, full_names=full_names)

    def push_features(self, view: str, rows: pd.DataFrame) -> int:
        return self.services.features.push(view, rows)

    def materialize_features(
        self, start: str | None, end: str, views: list[str] | None
    ) -> dict[str, int]:
        if start is None:
            return self.services.features.materialize_incremental(end, views)
        return self.services.features.materialize(start, end, views)

    def predict(self, target: Target, body: bytes) -> dict[str, Any]:
        # The server's gateway in this process, started on first use (client/_embedded.py).
        if self._gateway is None:
            from keel.client._embedded import EmbeddedGateway

            self._gateway = EmbeddedGateway(self.services)
        return self._gateway.predict(target, body)

    def close(self) -> None:
        if self._gateway is not None:
            self._gateway.close()
            self._gateway = None
        self.services.close()
