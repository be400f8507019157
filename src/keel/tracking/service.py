"""Tracking use cases: experiments, runs, metrics, params, tags, artifacts, inputs, search."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from keel._models import Page, decode_page_token, encode_page_token, now_ms
from keel.auth.models import AuditEntry
from keel.errors import Conflict, InvalidInput, NotFound
from keel.store.artifacts import ArtifactStore, iter_files, normalize_artifact_path
from keel.store.sql import SqlStore
from keel.tracking.environment import environment_hash
from keel.tracking.filters import FilterLimits, parse_filter, parse_order_by
from keel.tracking.models import ArtifactFile, Experiment, Metric, Run, RunInput, RunStatus
from keel.tracking.validation import (
    MAX_TAG_VALUE,
    check_artifacts_open,
    check_key,
    check_name,
    param_value,
    parse_metric,
)

__all__ = ["TrackingService"]

MAX_RESULTS = 10_000


def _max_results(value: int) -> int:
    if not 1 <= value <= MAX_RESULTS:
        raise InvalidInput(f"max_results must be in 1..{MAX_RESULTS}", field="max_results")
    return value


class TrackingService:
    """Experiments and runs over a :class:`SqlStore` and an :class:`ArtifactStore`."""

    def __init__(
        self,
        store: SqlStore,
        artifacts: ArtifactStore,
        *,
        max_batch: int = 10_000,
        filter_limits: FilterLimits | None = None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.max_batch = max_batch
        self.filter_limits = filter_limits or FilterLimits()

    # ---- experiments -------------------------------------------------------------
    def create_experiment(
        self, name: str, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Experiment:
        """Create an experiment; a taken name raises :class:`Conflict`."""
        experiment = Experiment(
            id=uuid.uuid4().hex,
            name=check_name(name),
            description=description,
            tags=self._tags(tags or {}),
            created_at_ms=now_ms(),
        )
        return self.store.create_experiment(experiment)

    def get_experiment(self, id_or_name: str) -> Experiment:
        """An experiment by id or name; raises :class:`NotFound`."""
        found = self.store.find_experiment(id_or_name)
        if found is None:
            raise NotFound(f"experiment {id_or_name!r} not found", field="experiment")
        return found

    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment named ``name``, created when missing (safe under races)."""
        found = self.store.find_experiment(name)
        if found is not None:
            return found
        try:
            return self.create_experiment(name)
        except Conflict:
            return self.get_experiment(name)

    def list_experiments(
        self, max_results: int = 100, page_token: str | None = None
    ) -> Page[Experiment]:
        """Experiments by name, one page at a time."""
        limit, offset = _max_results(max_results), decode_page_token(page_token)
        items = self.store.list_experiments(limit=limit + 1, offset=offset)
        token = encode_page_token(offset + limit) if len(items) > limit else None
        return Page[Experiment](items=items[:limit], next_token=token)

    # ---- runs --------------------------------------------------------------------------
    def create_run(
        self,
        experiment: str,
        *,
        name: str | None = None,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, object] | None = None,
        user: str | None = None,
        environment: Mapping[str, Any] | None = None,
        seed: int | None = None,
        start_time_ms: int | None = None,
    ) -> Run:
        """Start a run in ``experiment`` (id or name; a new name creates it)."""
        exp = self.store.find_experiment(experiment) or self.get_or_create_experiment(experiment)
        env = dict(environment or {})
        raw_git = env.get("git")
        git: dict[str, Any] = raw_git if isinstance(raw_git, dict) else {}
        run = Run(
            id=uuid.uuid4().hex,
            experiment_id=exp.id,
            name=name,
            status=RunStatus.RUNNING,
            start_time_ms=start_time_ms or now_ms(),
            parent_run_id=parent_run_id,
            user=user,
            tags=self._tags(tags or {}),
            params={check_key(k, "params"): param_value(k, v) for k, v in (params or {}).items()},
            code_commit=git.get("commit"),
            code_dirty=git.get("dirty"),
            environment=env,
            environment_hash=environment_hash(env) if env else None,
            seed=seed if seed is not None else env.get("seed"),
        )
        return self.store.create_run(run)

    def get_run(self, run_id: str) -> Run:
        """A run with params, latest metrics, tags and inputs; raises :class:`NotFound`."""
        return self.store.get_run(run_id)

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        """Mark a run FINISHED, FAILED or KILLED and return it."""
        self.finish_run(run_id, status)
        return self.store.get_run(run_id)

    def finish_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED) -> None:
        """Like :meth:`end_run` without reading the run back (the end of a ``with`` block)."""
        try:
            final = RunStatus(status)
        except ValueError as exc:
            raise InvalidInput(f"unknown run status {status!r}", field="status") from exc
        if not final.is_terminal:
            raise InvalidInput("a run can only end as FINISHED, FAILED or KILLED", field="status")
        self.store.set_run_status(run_id, final, now_ms())

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric | Mapping[str, Any]] = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, str] | None = None,
        nowait: bool = False,
        audit: AuditEntry | None = None,
    ) -> None:
        """Log metrics, params and tags atomically (all or nothing).

        ``nowait`` (SQLite): raise :class:`keel.store.sql.WriteBusy` at once, writing nothing,
        when another writer holds the database lock, instead of waiting for it.
        ``audit``: an audit entry committed in the same transaction (the API's own entry
        for the request, so that it is neither lost nor written by a second transaction).
        """
        if len(metrics) + len(params or {}) + len(tags or {}) > self.max_batch:
            raise InvalidInput(
                f"batch has more than {self.max_batch} entries",
                field="metrics",
                limit=self.max_batch,
            )
        checked = [parse_metric(m, f"metrics.{i}.") for i, m in enumerate(metrics)]
        self.store.log_batch(
            run_id,
            metrics=checked,
            params={check_key(k, "params"): param_value(k, v) for k, v in (params or {}).items()},
            tags=self._tags(tags or {}),
            nowait=nowait,
            audit=audit,
        )

    def log_metric(
        self, run_id: str, key: str, value: float, step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        """Log one metric value."""
        self.log_metric_body(
            run_id, {"key": key, "value": value, "step": step, "timestamp_ms": timestamp_ms}
        )

    def log_metric_body(
        self,
        run_id: str,
        metric: Metric | Mapping[str, Any],
        *,
        nowait: bool = False,
        audit: AuditEntry | None = None,
    ) -> None:
        """Log one metric ``{key, value, step?, timestamp_ms?}`` as sent (``POST
        /v1/runs/{id}/metrics``): errors name its own fields (``value``, ``step``).

        ``nowait`` and ``audit`` as in :meth:`log_batch`.
        """
        checked = parse_metric(metric)
        self.store.log_batch(
            run_id, metrics=[checked], params={}, tags={}, nowait=nowait, audit=audit
        )

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """All values of one metric of a run."""
        return self.store.metric_history(run_id, check_key(key, "metric"))

    def search_runs(
        self,
        experiments: Sequence[str],
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[Run]:
        """Runs of the experiments (ids or names) matching ``filter``, in ``order_by`` order."""
        if not experiments:
            raise InvalidInput("name at least one experiment", field="experiments")
        ids = [self.get_experiment(e).id for e in experiments]
        expr = parse_filter(filter, self.filter_limits)
        order = parse_order_by(list(order_by or []))
        limit, offset = _max_results(max_results), decode_page_token(page_token)
        run_ids = self.store.search_run_ids(ids, expr, order, limit=limit + 1, offset=offset)
        token = encode_page_token(offset + limit) if len(run_ids) > limit else None
        return Page[Run](items=self.store.get_runs(run_ids[:limit]), next_token=token)

    # ---- artifacts ----------------------------------------------------------------------
    def log_artifact_stream(
        self, run_id: str, path: str, stream: BinaryIO, *, max_bytes: int | None = None
    ) -> ArtifactFile:
        """Store one file of a running run at relative ``path`` (409 once it has ended)."""
        clean = normalize_artifact_path(path)
        # checked before the bytes are stored too (the store checks again, atomically)
        check_artifacts_open(run_id, self.store.get_run(run_id).status.value)
        blob = self.artifacts.put_stream(stream, max_bytes=max_bytes)
        item = ArtifactFile(path=clean, sha256=blob.sha256, size_bytes=blob.size_bytes)
        self.store.put_artifacts(run_id, [item])
        return item

    def log_artifact_dir(
        self, run_id: str, directory: Path, artifact_path: str = ""
    ) -> list[ArtifactFile]:
        """Store every file under ``directory`` below ``artifact_path``; symlinks are refused."""
        check_artifacts_open(run_id, self.store.get_run(run_id).status.value)
        prefix = (
            normalize_artifact_path(artifact_path, field="artifact_path") if artifact_path else ""
        )
        items = []
        for relative, file in iter_files(Path(directory)):
            blob = self.artifacts.put_file(file)
            path = f"{prefix}/{relative}" if prefix else relative
            items.append(ArtifactFile(path=path, sha256=blob.sha256, size_bytes=blob.size_bytes))
        self.store.put_artifacts(run_id, items)
        return items

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactFile]:
        """Files of a run (under ``prefix`` when given)."""
        clean = normalize_artifact_path(prefix, field="prefix") if prefix else None
        return self.store.list_artifacts(run_id, clean)

    def artifact_file(self, run_id: str, path: str) -> tuple[ArtifactFile, Path]:
        """A run's file record and the local path of its bytes."""
        clean = normalize_artifact_path(path)
        for item in self.store.list_artifacts(
            run_id, clean.rsplit("/", 1)[0] if "/" in clean else None
        ):
            if item.path == clean:
                return item, self.artifacts.path(item.sha256)
        raise NotFound(f"run {run_id} has no artifact {clean!r}", field="path")

    # ---- inputs ------------------------------------------------------------------------
    def log_input(self, run_id: str, item: RunInput) -> Run:
        """Record a dataset the run read; links the dataset version when one exists."""
        check_name(item.name, "name")
        version_id = None
        if item.dataset_version is not None:
            found = self.store.get_dataset_version(item.name, item.dataset_version)
            if found.content_hash != item.content_hash:
                raise InvalidInput(
                    f"dataset {item.name!r} version {item.dataset_version} has a different hash",
                    field="content_hash",
                )
            version_id = self.store.dataset_version_id(item.name, item.dataset_version)
        self.store.add_run_input(run_id, item, version_id)
        return self.store.get_run(run_id)

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _tags(tags: Mapping[str, str]) -> dict[str, str]:
        checked = {}
        for key, value in tags.items():
            text = str(value)
            if len(text) > MAX_TAG_VALUE:
                raise InvalidInput(
                    f"tag {key!r} is longer than {MAX_TAG_VALUE}", field=f"tags.{key}"
                )
            checked[check_key(key, "tags")] = text
        return checked
