"""The composition root: build every domain service from :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from keel.config import Settings
from keel.registry.service import RegistryService
from keel.store.artifacts import ArtifactStore
from keel.store.sql import SqlStore
from keel.store.sql.engine import make_engine
from keel.store.sql.migrate import current_revision, head_revision, upgrade
from keel.tracking.datasets import DatasetService
from keel.tracking.service import TrackingService

__all__ = ["Services", "open_services"]


@dataclass
class Services:
    """Everything an adapter (API, CLI, SDK) calls."""

    settings: Settings
    store: SqlStore
    artifacts: ArtifactStore
    tracking: TrackingService
    datasets: DatasetService
    registry: RegistryService

    def close(self) -> None:
        """Release database connections."""
        self.store.dispose()


def open_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Connect to the configured store; upgrade the schema first unless ``migrate`` is False."""
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings)
    if migrate and current_revision(engine) != head_revision():
        upgrade(engine)
    store = SqlStore(engine)
    artifacts = ArtifactStore(settings.resolved_artifact_root)
    return Services(
        settings=settings,
        store=store,
        artifacts=artifacts,
        tracking=TrackingService(store, artifacts, max_batch=settings.max_metrics_per_batch),
        datasets=DatasetService(store, artifacts),
        registry=RegistryService(store, artifacts, settings.resolved_model_cache_dir),
    )
