"""``keel.Client``: one SDK over an embedded store or a keel server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from keel._models import Page
from keel.client._approval import ApprovalMixin
from keel.client._deploy_checks import DeployChecksMixin
from keel.client._deploy_report import DeployReportMixin
from keel.client._deployments import DeploymentsMixin
from keel.client._economics import EconomicsMixin
from keel.client._exploration import ExplorationMixin
from keel.client._features import FeaturesMixin
from keel.client._interleaving import InterleavingMixin
from keel.client._jobs import JobsMixin
from keel.client._logs import LogsMixin
from keel.client._monitoring import MonitoringMixin
from keel.client._ops import OpsMixin
from keel.client._predict import PredictMixin
from keel.client._registry import RegistryMixin
from keel.client._run import ActiveRun
from keel.client._signals import SignalsMixin
from keel.client._transport import Transport
from keel.client._triggers import TriggersMixin
from keel.client._validation import ValidationMixin
from keel.config import Settings
from keel.errors import InvalidInput
from keel.store.artifacts import normalize_artifact_path
from keel.tracking.environment import capture_environment
from keel.tracking.models import (
    ArtifactFile,
    DatasetVersion,
    Experiment,
    Metric,
    Run,
    RunInput,
    RunStatus,
)
from keel.tracking.validation import parse_metric

# pandas and the fingerprint helpers (pyarrow) load where a DataFrame is handled: `import
# keel` and every CLI command import this module (#15.14).
if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Client"]


def _is_remote(uri: str | None) -> bool:
    return bool(uri) and str(uri).startswith(("http://", "https://"))


class Client(
    RegistryMixin,
    MonitoringMixin,
    DeploymentsMixin,
    DeployChecksMixin,
    DeployReportMixin,
    InterleavingMixin,
    JobsMixin,
    TriggersMixin,
    FeaturesMixin,
    PredictMixin,
    ValidationMixin,
    ApprovalMixin,
    EconomicsMixin,
    SignalsMixin,
    ExplorationMixin,
    LogsMixin,
    OpsMixin,
):
    """keel's Python SDK.

    ``Client()`` works embedded (SQLite under ``~/.keel`` or ``KEEL_*`` settings);
    ``Client("http://127.0.0.1:8080", token=...)`` talks to ``keel server`` with the
    same methods and the same exceptions. A database URL (``sqlite:///...``,
    ``postgresql+psycopg://...``) as ``uri`` opens that store embedded.

    Examples
    --------
    >>> client = Client()                                          # doctest: +SKIP
    >>> with client.start_run(experiment="churn") as run:          # doctest: +SKIP
    ...     run.log_params({"model": "lgbm"})
    ...     run.log_metrics({"auc": 0.84})
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        token: str | None = None,
        settings: Settings | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.settings = settings or Settings()
        if _is_remote(uri):
            from keel.client._http import HttpTransport

            self.transport: Transport = HttpTransport(
                str(uri),
                token=token,
                timeout_s=timeout_s,
                cache_dir=self.settings.resolved_model_cache_dir,
            )
        else:
            from keel.client._local import LocalTransport
            from keel.services import open_services

            if uri and uri != "local":
                self.settings = self.settings.model_copy(update={"database_url": uri})
            self.transport = LocalTransport(open_services(self.settings))

    def __repr__(self) -> str:
        return f"Client({self.transport!r})"

    def close(self) -> None:
        """Release connections."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- experiments -------------------------------------------------------------------
    def create_experiment(
        self, name: str, description: str | None = None, tags: Mapping[str, str] | None = None
    ) -> Experiment:
        """Create an experiment (``Conflict`` if the name is taken)."""
        return self.transport.create_experiment(name, description, dict(tags or {}))

    def get_experiment(self, id_or_name: str) -> Experiment:
        """An experiment by id or name (``NotFound`` if missing)."""
        return self.transport.get_experiment(id_or_name)

    def list_experiments(
        self, max_results: int = 100, page_token: str | None = None
    ) -> Page[Experiment]:
        """Experiments by name, one page at a time."""
        return self.transport.list_experiments(max_results, page_token)

    # ---- runs ----------------------------------------------------------------------------
    def start_run(
        self,
        experiment: str = "default",
        name: str | None = None,
        *,
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, str] | None = None,
        seed: int | None = None,
        parent_run_id: str | None = None,
        capture_env: bool = True,
    ) -> ActiveRun:
        """Start a run; use it as ``with client.start_run(...) as run:``.

        The environment (git commit and dirty flag, Python and key package
        versions, ``seed``) is recorded unless ``capture_env`` is False.
        """
        environment = capture_environment(seed) if capture_env else {}
        run = self.transport.create_run(
            experiment,
            name=name,
            params=dict(params or {}),
            tags=dict(tags or {}),
            seed=seed,
            parent_run_id=parent_run_id,
            environment=environment,
        )
        return ActiveRun(self, run)

    def get_run(self, run_id: str) -> Run:
        """A run with params, latest metrics, tags, inputs and environment."""
        return self.transport.get_run(run_id)

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED) -> Run:
        """End a run as FINISHED, FAILED or KILLED."""
        return self.transport.end_run(run_id, RunStatus(status).value)

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0) -> None:
        """Log one metric value (NaN and ±inf are kept as they are)."""
        self.transport.log_metric(run_id, parse_metric({"key": key, "value": value, "step": step}))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log several metrics at one step, atomically."""
        batch = [parse_metric({"key": k, "value": v, "step": step}) for k, v in metrics.items()]
        self.transport.log_batch(run_id, batch, {}, {})

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        """Log params (immutable: a changed value raises ``Conflict``)."""
        self.transport.log_batch(run_id, [], dict(params), {})

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags of a run."""
        self.transport.log_batch(run_id, [], {}, {k: str(v) for k, v in tags.items()})

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log metrics, params and tags in one transaction."""
        self.transport.log_batch(run_id, list(metrics), dict(params or {}), dict(tags or {}))

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every value of one metric, by step."""
        return self.transport.metric_history(run_id, key)

    def search_runs(
        self,
        experiment: str | Sequence[str],
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page[Run]:
        """Runs matching ``filter`` (e.g. ``"metrics.auc > 0.8 and params.model = 'lgbm'"``)."""
        experiments = [experiment] if isinstance(experiment, str) else list(experiment)
        return self.transport.search_runs(
            experiments, filter, list(order_by or []), max_results, page_token
        )

    # ---- artifacts -------------------------------------------------------------------------
    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> list[ArtifactFile]:
        """Store a file (at ``artifact_path`` or its own name) or a whole directory."""
        import shutil
        import tempfile

        path = Path(local_path)
        if path.is_dir():
            return self.transport.upload_artifacts(run_id, path, artifact_path or "")
        if not path.is_file():
            raise InvalidInput(f"no such file or directory: {path}", field="local_path")
        target = normalize_artifact_path(artifact_path or path.name, field="artifact_path")
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / target
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staged)
            return self.transport.upload_artifacts(run_id, Path(tmp), "")

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactFile]:
        """Files of a run."""
        return self.transport.list_artifacts(run_id, prefix)

    def download_artifact(self, run_id: str, path: str, destination: str | Path) -> Path:
        """Copy one file of a run to ``destination``."""
        return self.transport.download_artifact(run_id, path, Path(destination))

    # ---- inputs and datasets ------------------------------------------------------------------
    def log_input(
        self,
        run_id: str,
        data: pd.DataFrame | str | Path,
        name: str,
        *,
        context: str = "training",
        register: bool = True,
        source_uri: str | None = None,
    ) -> Run:
        """Record that the run read ``data`` (a DataFrame or a file).

        With ``register`` (default) the data is stored as a dataset version
        named ``name`` so the run's exact input can be fetched later;
        otherwise only its content hash, schema and row count are kept.
        """
        import pandas as pd

        from keel.tracking.fingerprint import frame_fingerprint, frame_schema

        if register:
            version = self.register_dataset(name, data, source_uri=source_uri)
            item = RunInput(
                name=name,
                context=context,
                content_hash=version.content_hash,
                schema=version.schema_,
                row_count=version.row_count,
                source_uri=version.source_uri,
                dataset_version=version.version,
            )
        elif isinstance(data, pd.DataFrame):
            item = RunInput(
                name=name,
                context=context,
                content_hash=frame_fingerprint(data),
                schema=frame_schema(data),
                row_count=len(data),
                source_uri=source_uri,
            )
        else:
            import hashlib

            path = Path(data)
            item = RunInput(
                name=name,
                context=context,
                content_hash=hashlib.sha256(path.read_bytes()).hexdigest(),
                source_uri=source_uri or path.resolve().as_uri(),
            )
        return self.transport.log_input(run_id, item)

    def register_dataset(
        self,
        name: str,
        data: pd.DataFrame | str | Path,
        *,
        description: str | None = None,
        source_uri: str | None = None,
    ) -> DatasetVersion:
        """Store a DataFrame or file as the next version of dataset ``name``.

        Identical content returns the existing version, so re-registering is safe.
        """
        import pandas as pd

        from keel.tracking.datasets import guess_format
        from keel.tracking.fingerprint import to_parquet_bytes

        if isinstance(data, pd.DataFrame):
            return self.transport.register_dataset(
                name, to_parquet_bytes(data), "parquet", description, source_uri
            )
        path = Path(data)
        if not path.is_file():
            raise InvalidInput(f"no such file: {path}", field="data")
        uri = source_uri or path.resolve().as_uri()
        return self.transport.register_dataset(
            name, path.read_bytes(), guess_format(path.name), description, uri
        )

    def get_dataset(self, name: str, version: int | None = None) -> DatasetVersion:
        """A dataset version (the latest when ``version`` is None)."""
        return self.transport.get_dataset(name, version)

    def get_dataset_by_hash(self, content_hash: str) -> DatasetVersion:
        """The dataset version with this content hash (or a unique prefix)."""
        return self.transport.get_dataset_by_hash(content_hash)

    def list_datasets(self, name: str | None = None) -> list[DatasetVersion]:
        """All dataset versions, or those of ``name``."""
        return self.transport.list_datasets(name)

    def load_dataset(self, name: str, version: int | None = None) -> pd.DataFrame:
        """A tabular dataset version as a DataFrame."""
        from keel.tracking.fingerprint import read_table

        item = self.get_dataset(name, version)
        if item.format not in ("parquet", "csv"):
            raise InvalidInput(f"dataset {name!r} is a {item.format}, not a table", field="name")
        return read_table(self.transport.dataset_bytes(item), item.format)

    def dataset_bytes(self, name: str, version: int | None = None) -> bytes:
        """The stored bytes of a dataset version."""
        return self.transport.dataset_bytes(self.get_dataset(name, version))
