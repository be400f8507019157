"""The serving gateway: rate limit → resolve → pool → validate → cache → breaker → batch → log.

:class:`Gateway` knows nothing of HTTP: the API's serving router hands it the raw body
and a client key and turns its :class:`PredictResult` (or a :class:`~keel.errors.KeelError`)
into a response. One gateway per process; ``start()`` preloads and warms the configured
models before it reports ready, ``close()`` releases threads, tasks and connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from keel.config import Settings
from keel.errors import KeelError
from keel.registry.service import RegistryService
from keel.registry.uri import parse_model_ref
from keel.serving._gatewayhooks import GatewayHooks
from keel.serving._predictpath import PredictPath
from keel.serving.aliases import AliasTable
from keel.serving.batcher import Lane, MicroBatcher
from keel.serving.bulkhead import Bulkhead
from keel.serving.cachefront import open_cache
from keel.serving.deployroutes import DeploymentReader, DeploymentRoutes
from keel.serving.enrich import PENDING, FeatureBinder, OnlineFeatureSource
from keel.serving.exploration import ExplorationTable
from keel.serving.interface import (
    CachedAnswer,
    PredictionSink,
    PredictResult,
    Target,
    limit_native_threads,
)
from keel.serving.pool import ModelPool, PoolEntry
from keel.serving.protection import Protection
from keel.serving.ratelimit import RateLimiter
from keel.serving.shadow import ShadowQueue
from keel.serving.subscriber import listen
from keel.serving.switching import ProcessSetting, gc_threshold, heap_frozen, switch_interval

__all__ = ["CachedAnswer", "Gateway", "PredictResult", "PredictionSink", "Target"]

log = logging.getLogger("keel.serving")


class Gateway(GatewayHooks, PredictPath):
    """Serves predictions of registered model versions; see ``docs/serving.md``.

    Its jobs are mixins, each in its module (plain methods: no call is added per request):
    the full request path :class:`~keel.serving._predictpath.PredictPath`, the in-process
    hit answers :class:`~keel.serving._hitanswers.HitAnswers`, series and prediction-log
    rows :class:`~keel.serving._bookkeeping.Bookkeeping`, and the listeners of cache,
    alias and deployment events :class:`~keel.serving._gatewayhooks.GatewayHooks`. This
    module builds and wires them, starts and closes them, and reports status.
    """

    def __init__(
        self,
        settings: Settings,
        registry: RegistryService,
        *,
        prediction_log: PredictionSink | None = None,
        features: OnlineFeatureSource | None = None,
        deployments: DeploymentReader | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.prediction_log = prediction_log
        # A sink that takes whole requests (PredictionLog) gets them; others get records.
        append_served = getattr(prediction_log, "append_served", None)
        self._log = append_served if callable(append_served) else self._log_records
        # Group commit (KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0): answers wait for the log.
        self._durable = getattr(prediction_log, "group_commit", False) is True
        if self._durable:
            self._log = prediction_log.append_durable  # type: ignore[union-attr]
        elif prediction_log is None and settings.prediction_log_flush_interval_s == 0:
            self._durable = True  # the log did not open: no answer can be logged, none given
        self.id = uuid.uuid4().hex[:12]
        self.limiter = RateLimiter(
            settings.serving_rate_limit,
            redis_url=settings.redis_url,
            key_header=settings.serving_rate_limit_key_header,
        )
        self.executor = ThreadPoolExecutor(
            settings.serving_predict_threads,
            thread_name_prefix="keel-predict",
            initializer=limit_native_threads,
            initargs=(settings.serving_model_threads,),
        )
        self.pool = ModelPool(
            registry,
            self.executor,
            max_bytes=settings.serving_pool_max_bytes,
            allow_pickle=settings.allow_pickle,
            trusted_classes=settings.trusted_model_class_names,
            max_rows=settings.max_predict_rows,
            on_load=self._on_load,
            on_evict=self._on_evict,
        )
        self.aliases = AliasTable(registry, self.pool, refresh_ms=settings.serving_alias_refresh_ms)
        self.cache = open_cache(settings)
        # Deployment routes (all answer paths pick the arm here, before the cache) and the
        # shadow arms' bounded queues; deployroutes.py and shadow.py say how.
        self.deployments = deployments
        self.routes = DeploymentRoutes(
            deployments,
            self.id,
            refresh_s=settings.serving_alias_refresh_ms / 1000 or 1.0,
            on_change=self._route_changed,
        )
        self.shadows = ShadowQueue(self)
        # Experimental arms' model calls: a partition of their own (R-DEP-19, bulkhead.py).
        self.bulkhead = Bulkhead(
            share=settings.serving_experimental_share,
            predict_threads=settings.serving_predict_threads,
            batch_rows=settings.serving_batch_max_size,
            model_threads=settings.serving_model_threads,
        )
        self.protection = Protection(settings, registry, self.pool)
        # Models' exploration policies (R-TRN-24, exploration.py): one lookup per answer
        self.exploration = ExplorationTable(
            registry, refresh_s=settings.serving_alias_refresh_ms / 1000 or 1.0
        )
        self.exploring = self.exploration.policies
        # Feature services naming a served model feed it online features (enrich.py).
        self.binder = (
            None
            if features is None
            else FeatureBinder(
                features, self.pool.entries, threads=max(2, settings.serving_predict_threads)
            )
        )
        # one per version and lane (primary threads, or the bulkhead's: experimental arms)
        self.batchers: dict[tuple[str, int, bool], MicroBatcher] = {}
        # one per deployment: its arms' requests batch together, a lane per version
        self.arm_batchers: dict[str, MicroBatcher] = {}
        self.lanes: dict[tuple[str, int, bool], Lane] = {}
        self.cache_hits: Counter[str] = Counter()
        self.cache_misses: Counter[str] = Counter()
        self.events_applied = 0
        self.preload_errors: dict[str, str] = {}
        self.ready = False
        # Background tasks, each dropped when it ends (a list grew by one per alias move
        # for the life of the process, #15.28). _stale: aliases moved since their last
        # read began; _rereads: aliases whose re-read task runs (at most one each).
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stale: set[tuple[str, str]] = set()
        self._rereads: set[tuple[str, str]] = set()
        self._redis: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: list[ProcessSetting] = []  # interpreter settings start() holds

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe to invalidation events, preload and warm models, then become ready."""
        loop = asyncio.get_running_loop()
        if self.settings.redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self.settings.redis_url)
            subscribed = asyncio.Event()
            self._spawn(listen(self._redis, self.apply, subscribed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), timeout=5)
        for ref in filter(None, (r.strip() for r in self.settings.serving_preload.split(","))):
            try:
                await self.preload(ref)
            except KeelError as exc:
                self.preload_errors[ref] = exc.message
                log.error("preloading %s failed: %s", ref, exc.message)
        self._spawn(self.aliases.run())
        self._spawn(self.routes.run())
        self._spawn(self.exploration.run(lambda: [e.name for e in self.pool.entries()]))
        if self.binder is not None:
            self.binder.listen(self.cache)
            # half the store's trust period: requests rarely find the definitions stale
            every = min(30.0, max(0.5, self.settings.features_registry_refresh_s / 2))
            self._spawn(self.binder.watch(every))
        self._loop = loop
        self.registry.add_alias_listener(self._alias_moved)
        listen_changes = getattr(self.deployments, "add_listener", None)
        if callable(listen_changes):  # a change made in this process: effective at once
            listen_changes(self._deployment_changed)
        # Held for as long as the gateway runs, restored by the last to stop (switching.py):
        # - the heap frozen out of the collector's sight (full collections under load stopped
        #   walking it: p99 300+ ms → ~50 ms in benchmarks/bench_serving.py);
        # - a shorter thread switch interval (a request waited up to 5 ms for the GIL behind
        #   the prediction-log writer: p99 of cache hits 10-12 ms at a 0.6 ms p50 in
        #   benchmarks/bench_serving.py, 6-8 ms at 0.5 ms);
        # - a larger collector threshold (6-11 µs of a model-path request in collections,
        #   1.4-2 µs with 10,000, in bench_deploy_route.py).
        wanted = (
            (heap_frozen, float(self.settings.serving_gc_freeze)),
            (switch_interval, self.settings.serving_switch_interval_ms / 1000),
            (gc_threshold, self.settings.serving_gc_threshold),
        )
        for setting, value in wanted:
            if value > 0 and setting not in self._held:
                setting.hold(value)
                self._held.append(setting)
        self.ready = True

    async def preload(self, ref: str) -> int:
        """Load and warm ``name@alias``, ``name/version`` or ``name`` (latest) now."""
        parsed = parse_model_ref(ref)
        if parsed.alias is not None:
            return await self.aliases.pin(parsed.name, parsed.alias)
        version = parsed.version
        if version is None:
            version = (await asyncio.to_thread(self.registry.resolve, parsed)).version
        await self.pool.warm(parsed.name, version)
        return version

    async def close(self) -> None:
        """Stop background tasks and batchers, flush the prediction log, close connections."""
        self.ready = False
        self.registry.remove_alias_listener(self._alias_moved)
        unlisten = getattr(self.deployments, "remove_listener", None)
        if callable(unlisten):
            unlisten(self._deployment_changed)
        while self._held:
            self._held.pop().release()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.aliases.close()
        await self.shadows.close()
        for batcher in [*self.batchers.values(), *self.arm_batchers.values()]:
            await batcher.close()
        if self.cache is not None:
            await self.cache.close()
        if self._redis is not None:
            await self._redis.aclose()
        await self.limiter.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.bulkhead.close()
        if self.binder is not None:
            await asyncio.to_thread(self.binder.close)  # waits for a definitions read
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    def _on_evict(self, entry: PoolEntry) -> None:
        """Drop the evicted version's batchers and lanes: they hold its entry (and model),
        which the pool's byte budget means to free."""
        for key in [k for k, b in self.batchers.items() if b.owner is entry]:
            self.batchers.pop(key).retire()
        for key in [k for k, lane in self.lanes.items() if lane.owner is entry]:
            del self.lanes[key]

    def _on_load(self, entry: PoolEntry) -> None:
        self.exploration.load(entry.name)  # before the version's first answer
        setter = getattr(self.prediction_log, "set_signature", None)
        signature = entry.model.signature
        if callable(setter) and signature is not None:
            setter(entry.name, entry.version, signature)
        if self.binder is not None:
            entry.binding = PENDING  # resolved by its first request, before any fast path

    def status(self) -> dict[str, Any]:
        """Pool, aliases, breakers, cache counters and batch sizes, for ``/v1/serving/status``."""
        return {
            "ready": self.ready,
            "gateway_id": self.id,
            "models": [e.describe() for e in self.pool.entries()],
            "pool_bytes": self.pool.total_bytes,
            "pool_max_bytes": self.pool.max_bytes,
            "aliases": self.aliases.describe(),
            "breakers": self.protection.describe(),
            "cache": {
                "backend": self.cache.backend if self.cache is not None else None,
                "hits": dict(self.cache_hits),
                "misses": dict(self.cache_misses),
            },
            "batch_rows": {
                f"{n}/{v}{'/experimental' if x else ''}": {
                    str(k): c for k, c in sorted(b.sizes.items())
                }
                for (n, v, x), b in self.batchers.items()
            }
            | {
                f"deployment:{name}": {str(k): c for k, c in sorted(b.sizes.items())}
                for name, b in self.arm_batchers.items()
            },
            "preload_errors": self.preload_errors,
            "exploration": self.exploration.describe(),
            "events_applied": self.events_applied,
            "background_tasks": len(self._tasks),
            "deployments": {
                **self.routes.describe(),
                "shadows": self.shadows.describe(),
                "bulkhead": self.bulkhead.describe(),
            },
        }
