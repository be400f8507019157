"""The composition root: build every domain service from :class:`Settings`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from keel.auth.guard import VerificationGuard
from keel.auth.service import AuthService
from keel.automation.jobs import JobService
from keel.automation.kinds import import_kind_modules
from keel.automation.queue import JobQueue, make_huey
from keel.automation.triggers.service import TriggerService
from keel.config import Settings
from keel.decisions.service import DecisionLog
from keel.deploy.service import DeploymentService
from keel.features import FeatureStore
from keel.features.invalidation import redis_invalidator
from keel.monitoring.feedback import FeedbackStore
from keel.monitoring.service import MonitorService
from keel.monitoring.signals import signal_lookup
from keel.registry.packaging import load_model_dir
from keel.registry.service import AliasListener, RegistryService
from keel.serving.predlog import log_root
from keel.store.artifacts import ArtifactStore
from keel.store.sql import SqlStore
from keel.store.sql.auth import AuthSql
from keel.store.sql.decisions import DecisionSql
from keel.store.sql.deployments import DeploymentSql
from keel.store.sql.jobs import JobSql
from keel.store.sql.migrate import open_engine
from keel.store.sql.monitoring import MonitorSql
from keel.store.sql.triggers import TriggerSql
from keel.tracking.datasets import DatasetService
from keel.tracking.filters import FilterLimits
from keel.tracking.service import TrackingService

__all__ = ["Services", "open_services"]

log = logging.getLogger("keel")

#: Modules that register keel's built-in job kinds beyond ``keel.automation.kinds``.
BUILTIN_KIND_MODULES = ("keel.automation.retrain", "keel.deploy.jobs")


@dataclass
class Services:
    """Everything an adapter (API, CLI, SDK) calls."""

    settings: Settings
    store: SqlStore
    artifacts: ArtifactStore
    tracking: TrackingService
    datasets: DatasetService
    registry: RegistryService
    auth: AuthService
    features: FeatureStore
    feedback: FeedbackStore
    monitors: MonitorService
    decisions: DecisionLog
    deployments: DeploymentService
    jobs: JobService
    triggers: TriggerService = field(init=False)  # needs the services it evaluates over

    def close(self) -> None:
        """Commit queued audit entries and feature usage, then release database connections.

        Every step runs even when an earlier one fails (its error is raised after): a failed
        write must not leave the pooled connections to the garbage collector.
        """
        try:
            try:
                self.auth.close()
            finally:
                self.features.close()
        finally:
            self.store.dispose()


def _feature_store(settings: Settings, engine: Engine) -> FeatureStore:
    """The feature store; with Redis, a push invalidates the pushed entities' cached predictions
    on every gateway (``keel.features.invalidation``; a standalone ``FeatureStore(settings)``
    wires the same callback itself)."""
    features = FeatureStore(settings, engine=engine)
    if settings.redis_url:
        features.add_invalidation_callback(redis_invalidator(settings.redis_url))
    return features


def _alias_publisher(redis_url: str) -> AliasListener:
    """Tell every gateway replica about an alias move made by this process (Redis pub/sub).

    Without it, a replica sees a move made elsewhere (the CLI, another server) at its next
    poll (``KEEL_SERVING_ALIAS_REFRESH_MS``). Publishing is best effort: a Redis outage
    leaves the polls.
    """
    import redis

    from keel.serving.events import CHANNEL, make_invalidation

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def publish(name: str, alias: str, _version: int | None) -> None:
        try:
            client.publish(CHANNEL, make_invalidation(model=name, alias=alias).to_json())
        except redis.RedisError as exc:
            log.warning("could not announce the move of %s@%s: %r", name, alias, exc)

    return publish


def open_services(settings: Settings, *, migrate: bool = True) -> Services:
    """Connect to the configured store; upgrade the schema first unless ``migrate`` is False.

    When anything fails after the engine opened (the job queue's file refusing to open,
    say), what was opened is closed before the error propagates: a caller that handles
    the error (a retrying server, a test) keeps no connection or thread of a half-built
    Services.
    """
    engine = open_engine(settings, migrate=migrate)
    closers: list[Callable[[], object]] = [engine.dispose]
    try:
        return _wire(settings, engine, closers)
    except BaseException:
        for close in reversed(closers):
            try:
                close()
            except Exception:  # the caller needs the first error, not this one
                log.warning("could not close %r after a failed open", close, exc_info=True)
        raise


def _wire(settings: Settings, engine: Engine, closers: list[Callable[[], object]]) -> Services:
    """Every service over ``engine``; each one that holds resources adds its ``close``."""
    store = SqlStore(engine)
    artifacts = ArtifactStore(
        settings.resolved_artifact_root, min_free_bytes=settings.artifact_min_free_bytes
    )
    tracking = TrackingService(
        store,
        artifacts,
        max_batch=settings.max_metrics_per_batch,
        filter_limits=FilterLimits.from_settings(settings),
    )
    datasets = DatasetService(store, artifacts)
    registry = RegistryService(store, artifacts, settings.resolved_model_cache_dir)
    if settings.redis_url:
        registry.add_alias_listener(_alias_publisher(settings.redis_url))
    predictions_root = log_root(settings)
    feedback = FeedbackStore(predictions_root.parent / "feedback", predictions_root)
    feedback.signals = signal_lookup(registry)  # R-TRN-23: implicit signals → labels
    features = _feature_store(settings, engine)
    closers.append(features.close)
    decisions = DecisionLog(DecisionSql(engine))
    deployments = DeploymentService(
        DeploymentSql(engine),
        registry,
        decisions,
        predictions_root=predictions_root,
        labels=feedback.labelled,
    )
    registry.add_archive_guard(deployments.check_archive)
    deployments.model_loader = lambda version: load_model_dir(
        registry.model_dir(version),
        allow_pickle=settings.allow_pickle,
        trusted_classes=settings.trusted_model_class_names,
    )
    if settings.redis_url:
        from keel.serving.events import deployment_publisher

        deployments.add_listener(deployment_publisher(settings.redis_url))
    auth = AuthService(
        AuthSql(engine),
        enabled=settings.auth == "on",
        cache_ttl_s=settings.auth_cache_ttl_s,
        guard=VerificationGuard(
            per_token=settings.auth_failure_limit_per_token,
            per_client=settings.auth_failure_limit_per_client,
            max_parallel=settings.auth_max_parallel_checks,
        ),
    )
    closers.append(auth.close)
    services = Services(
        settings=settings,
        store=store,
        artifacts=artifacts,
        tracking=tracking,
        datasets=datasets,
        registry=registry,
        auth=auth,
        features=features,
        feedback=feedback,
        decisions=decisions,
        deployments=deployments,
        monitors=MonitorService(
            MonitorSql(engine),
            registry,
            tracking,
            datasets,
            feedback,
            predictions_root,
            lambda version: load_model_dir(
                registry.model_dir(version),
                allow_pickle=settings.allow_pickle,
                trusted_classes=settings.trusted_model_class_names,
            ),
            freshness=features.freshness,
        ),
        jobs=JobService(
            JobSql(engine),
            JobQueue(make_huey(settings)),
            lease_s=settings.jobs_lease_s,
            misfire_grace_s=settings.jobs_misfire_grace_s,
            max_retries=settings.jobs_max_retries,
            backoff_s=settings.jobs_retry_backoff_s,
        ),
    )
    services.triggers = TriggerService(TriggerSql(engine), services)
    import keel.automation.triggers.jobs  # noqa: F401  (registers triggers.evaluate)

    services.jobs.attach(services)  # job kinds run against these services
    from keel.deploy.jobs import finish_listener, schedule_on_create

    # deploy.evaluate / deploy.retention are scheduled once a first deployment exists
    deployments.add_listener(
        schedule_on_create(
            services.jobs, settings.deploy_evaluate_cron, settings.deploy_retention_cron
        )
    )
    # R-DEP-17/-10: a deployment's end queues its report archive (and a stateful rollback's
    # contamination count): both read the whole log, so the promote/rollback call does not
    # wait for them; last, after the gateways have applied and announced the change.
    deployments.add_listener(finish_listener(services.jobs), last=True)
    # keel's own kinds first (retrain.run …), then the user's KEEL_JOBS_IMPORTS
    import_kind_modules(BUILTIN_KIND_MODULES)
    import_kind_modules(m.strip() for m in settings.jobs_imports.split(",") if m.strip())
    return services
