"""The serving gateway: rate limit → resolve → pool → validate → cache → breaker → batch → log.

:class:`Gateway` knows nothing of HTTP: the API's serving router hands it the raw body
and a client key and turns its :class:`PredictResult` (or a :class:`~keel.errors.KeelError`)
into a response. One gateway per process; ``start()`` preloads and warms the configured
models before it reports ready, ``close()`` releases threads, tasks and connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from keel.config import Settings
from keel.errors import (
    GatewayTimeout,
    InvalidInput,
    KeelError,
    ModelError,
    Unavailable,
)
from keel.registry.service import RegistryService
from keel.registry.uri import parse_model_ref
from keel.serving._commit import REFUSED, CommitGroup
from keel.serving.aliases import AliasTable
from keel.serving.batcher import BatchResult, MicroBatcher
from keel.serving.blame import judged_call
from keel.serving.cachefront import open_cache
from keel.serving.deployroutes import (
    UNFINISHED,
    ArmRoute,
    DeploymentReader,
    DeploymentRoute,
    DeploymentRoutes,
    versions_left,
)
from keel.serving.enrich import PENDING, FeatureBinder, OnlineFeatureSource
from keel.serving.events import CHANNEL, Invalidation, make_invalidation
from keel.serving.hits import TIMING, render, response_body
from keel.serving.interface import (
    CachedAnswer,
    PredictionSink,
    PredictResult,
    Target,
    limit_native_threads,
)
from keel.serving.metrics import BATCH_ROWS, ERRORS, FALLBACKS, cache_series, series
from keel.serving.pool import ModelPool, PoolEntry
from keel.serving.protection import Protection
from keel.serving.ratelimit import RateLimiter
from keel.serving.records import ServedRequest
from keel.serving.shadow import ShadowQueue
from keel.serving.subscriber import listen
from keel.serving.switching import switch_interval
from keel.serving.validation import MEMO_MAX_BODY, ParsedInput

__all__ = ["CachedAnswer", "Gateway", "PredictResult", "PredictionSink", "Target"]

log = logging.getLogger("keel.serving")
#: A deployment request's route and the arm chosen for it (None on model routes).
Via = tuple[DeploymentRoute, ArmRoute] | None


@dataclass(slots=True)
class _Outcome:
    predictions: list[Any]
    probabilities: list[Any] | None
    version: int
    fallback: bool
    hits: list[bool]


class Gateway:
    """Serves predictions of registered model versions; see ``docs/serving.md``."""

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
        self._log: Callable[[ServedRequest], CommitGroup | None] = (
            append_served if callable(append_served) else self._log_records
        )
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
        self.protection = Protection(settings, registry, self.pool)
        # Feature services naming a served model feed it online features (enrich.py).
        self.binder = (
            None
            if features is None
            else FeatureBinder(
                features, self.pool.entries, threads=max(2, settings.serving_predict_threads)
            )
        )
        self.batchers: dict[tuple[str, int], MicroBatcher] = {}
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
        self._switch_held = False  # whether start() shortened the switch interval

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
        # Everything alive now (libraries, loaded models) lives as long as the process: take
        # it out of the collector's sight, so full collections under load stop walking it
        # (p99 300+ ms → ~50 ms in benchmarks/bench_serving.py). close() gives it back.
        gc.collect()
        gc.freeze()
        # The prediction-log writer converts a batch to Arrow in this interpreter; with
        # Python's 5 ms switch interval a request that arrives meanwhile waits up to 5 ms
        # for the GIL at each wake-up (p99 of cache hits 10-12 ms at a 0.6 ms p50 in
        # benchmarks/bench_serving.py; 6-8 ms at 0.5 ms, same throughput). close() restores.
        if self.settings.serving_switch_interval_ms > 0 and not self._switch_held:
            switch_interval.hold(self.settings.serving_switch_interval_ms / 1000)
            self._switch_held = True
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
        gc.unfreeze()
        if self._switch_held:
            switch_interval.release()
            self._switch_held = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.aliases.close()
        await self.shadows.close()
        for batcher in self.batchers.values():
            await batcher.close()
        if self.cache is not None:
            await self.cache.close()
        if self._redis is not None:
            await self._redis.aclose()
        await self.limiter.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.binder is not None:
            self.binder.close()
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    def _log_records(self, served: ServedRequest) -> None:
        if self.prediction_log is not None:
            for record in served.records():
                self.prediction_log.append(record)

    def _on_load(self, entry: PoolEntry) -> None:
        setter = getattr(self.prediction_log, "set_signature", None)
        signature = entry.model.signature
        if callable(setter) and signature is not None:
            setter(entry.name, entry.version, signature)
        if self.binder is not None:
            entry.binding = PENDING  # resolved by its first request, before any fast path

    # ---- predict -----------------------------------------------------------------------------
    async def predict(self, target: Target, body: bytes, *, client_key: str) -> PredictResult:
        """Answer one predict request; raises KeelError subclasses for every failure."""
        started = time.perf_counter()
        await self.limiter.check(client_key)
        via: Via = None
        if target.deployment:  # the arm first: its version is in every cache key
            via = await self.routes.pick(target.name, body)
            target = Target(via[0].model, version=via[1].version)
        answered = self._from_memory(target, body, started, via)
        if answered is not None:
            if via is not None and via[0].shadows:
                self.shadows.offer(via[0], answered.body["request_id"], body)
            if answered.commit is not None:
                await self._committed(answered.commit)
            return answered
        timings: dict[str, float] = {}
        reached: list[int] = []
        try:
            async with asyncio.timeout(self.settings.serving_timeout_s):
                result = await self._predict(target, body, started, timings, reached, via)
        except TimeoutError:
            version = reached[0] if reached else None
            if version is not None:
                self.protection.breaker(target.name, version).record(False)
            ERRORS.labels(target.name, str(version), "timeout").inc()
            raise GatewayTimeout(
                f"prediction of {target.name} took longer than "
                f"{self.settings.serving_timeout_s:g} s",
                field="model",
                timeout_s=self.settings.serving_timeout_s,
            ) from None
        if via is not None and via[0].shadows:  # off the response path, never waited for
            self.shadows.offer(via[0], result.body["request_id"], body)
        if result.commit is not None:  # waited for outside the model's timeout and breaker
            await self._committed(result.commit)
        return result

    async def _committed(self, commit: CommitGroup) -> None:
        """Return once the answer's rows are durable in the prediction log (group commit).

        Raises :class:`Unavailable` (503) when the log refused or failed to write them, or
        did not within ``KEEL_SERVING_TIMEOUT_S``: an answer is never given unlogged.
        """
        timeout_s = self.settings.serving_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                written = await commit.wait_async()
        except TimeoutError:
            written = False
        if not written:  # counted by keel_prediction_log_records_total (dropped or failed)
            raise Unavailable(
                "the prediction log could not record this answer, so it is not given "
                "(KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0); retry",
                field="prediction_log",
                retry_after_s=1,
            )

    async def _predict(
        self,
        target: Target,
        body: bytes,
        started: float,
        timings: dict[str, float],
        reached: list[int],
        via: Via = None,
    ) -> PredictResult:
        name = target.name
        if target.version is not None:
            version = target.version
        elif target.alias is not None:
            version = await self.aliases.version(name, target.alias)
        else:
            raise InvalidInput("name a version or an alias", field="version")
        reached.append(version)
        try:
            entry = await self.pool.get(name, version)
        except Unavailable:
            ERRORS.labels(name, str(version), "load_error").inc()
            raise
        mark = time.perf_counter()
        parsed = await self._parse(entry, body, timings)
        if parsed.probabilities and not entry.has_probabilities:
            raise InvalidInput(
                f"model {name}/{version} does not output probabilities", field="probabilities"
            )
        timings["validation"] = (time.perf_counter() - mark) * 1000 - timings.get("features", 0.0)
        outcome = await self._answer(entry, parsed, body, timings)
        return self._respond(entry, parsed, outcome, started, timings, via)

    async def _parse(self, entry: PoolEntry, body: bytes, timings: dict[str, float]) -> ParsedInput:
        """The request's rows: the body's, with online features merged in when a feature
        service feeds the model (the lookup's time goes to ``timings["features"]``)."""
        binder = self.binder
        if binder is not None:
            binding = await binder.binding(entry)
            if binding is not None:
                return await binder.parse(entry, binding, body, timings)
        return entry.spec.parse(body)

    def _from_memory(
        self, target: Target, body: bytes, started: float, via: Via = None
    ) -> PredictResult | None:
        """The answer when every row is in the in-process cache, without awaiting anything.

        A cache hit's version, model entry, parsed body and rows are all in memory: this
        path answers them with no timeout scope, no task switch and no lock wait (the
        cheapest request keel serves; see docs/benchmarks.md). Anything else returns None
        and takes the full path, which validates and counts again. The answer is also
        rendered for :meth:`answer_cached`, which serves the next identical request.
        """
        located = self._locate(target)
        if located is None:
            return None
        name, version, entry = located
        mark = time.perf_counter()
        try:
            parsed = entry.spec.parse(body)
        except KeelError:
            return None  # the full path raises it, in its order of checks
        if parsed.probabilities and not entry.has_probabilities:
            return None
        checked = time.perf_counter()
        rows = self.cache.peek(name, version, parsed.keys, parsed.probabilities)  # type: ignore[union-attr]
        if rows is None:
            return None
        if len(body) <= MEMO_MAX_BODY:
            memo = body if via is None else via[1].memo_prefix + body
            rendered = entry.hits.get(memo)
            if rendered is None or not rendered.current(rows):
                arm = None if via is None else via[1].name
                deployment = None if via is None else via[0].name
                entry.hits.remember(memo, render(name, version, parsed, rows, deployment, arm))
        self._count_hits(name, len(rows))
        timings = {
            "validation": (checked - mark) * 1000,
            "cache": (time.perf_counter() - checked) * 1000,
            "model": 0.0,
        }
        outcome = _Outcome(
            predictions=[row[0] for row in rows],
            probabilities=[row[1] for row in rows],
            version=version,
            fallback=False,
            hits=[True] * len(rows),
        )
        return self._respond(entry, parsed, outcome, started, timings, via)

    def answer_cached(self, target: Target, body: bytes, *, client_key: str) -> CachedAnswer | None:
        """A repeated cache hit's response, serialised, or None: then call :meth:`predict`.

        Serves a body :meth:`predict` has already answered from the in-process cache
        (its rendered answer, see :mod:`keel.serving.hits`) while the cache still holds
        the very rows it was rendered from; the rate limit, counters, latency series and
        prediction log are those of :meth:`predict`. It returns None before counting
        anything, so a caller that gets None calls :meth:`predict` with the same body.
        Raises :class:`~keel.errors.RateLimited` as :meth:`predict` does.
        """
        started = time.perf_counter()
        if not self.limiter.is_local or self._durable:  # group commit: predict() waits
            return None
        via: Via = None
        if target.deployment:  # the arm first, as in predict(): its version keys the cache
            via = self.routes.pick_now(target.name, body)
            if via is None:
                return None
            target = Target(via[0].model, version=via[1].version)
        located = self._locate(target)
        if located is None:
            return None
        name, version, entry = located
        rendered = entry.hits.get(body if via is None else via[1].memo_prefix + body)
        if rendered is None:
            return None
        parsed = rendered.parsed
        checked = time.perf_counter()
        rows = self.cache.lookup_local(name, version, parsed.keys)  # type: ignore[union-attr]
        if not rendered.current(rows):  # a miss, expired or changed row: not the same rows
            return None
        found = time.perf_counter()
        self.limiter.check_local(client_key)
        request_id = b"%032x" % random.getrandbits(128)  # uuid4 reads urandom: 10x slower
        payload = rendered.payload(request_id)
        done = time.perf_counter()
        elapsed_ms = (done - started) * 1000
        self._count_hits(name, len(rows))
        self._served(
            name,
            version,
            parsed,
            request_id.decode("ascii"),
            elapsed_ms,
            rendered.predictions,
            rendered.probabilities,
            rendered.hits,
            False,
            via,
        )
        if via is not None and via[0].shadows:
            self.shadows.offer(via[0], request_id.decode("ascii"), body)
        timing = TIMING % (
            (checked - started) * 1000,
            (found - checked) * 1000,
            0.0,
            (done - found) * 1000,
        )
        return CachedAnswer(payload, timing)

    def _locate(self, target: Target) -> tuple[str, int, PoolEntry] | None:
        """Name, version and loaded entry of a target served from the in-process cache,
        when all three are known without awaiting anything; else None."""
        cache = self.cache
        if cache is None or not cache.is_local:
            return None
        name = target.name
        version = target.version
        if version is None:
            version = self.aliases.serving_now(name, target.alias or "")
            if version is None:
                return None
        entry = self.pool.loaded(name, version)
        if entry is None or entry.binding is not None:
            # A bound model's answer depends on online values, not on the body alone (and
            # an unresolved one may be bound): only the full path answers it.
            return None
        return name, version, entry

    def _respond(
        self,
        entry: PoolEntry,
        parsed: ParsedInput,
        outcome: _Outcome,
        started: float,
        timings: dict[str, float],
        via: Via = None,
    ) -> PredictResult:
        """The response body; metrics and prediction-log records on the way."""
        name = entry.name
        elapsed_ms = (time.perf_counter() - started) * 1000
        request_id = f"{random.getrandbits(128):032x}"  # uuid4 reads urandom: 10x slower
        result = response_body(
            outcome.predictions,
            name,
            outcome.version,
            request_id,
            cached=all(outcome.hits),
            fallback=outcome.fallback,
            probabilities=outcome.probabilities if parsed.probabilities else None,
            deployment=None if via is None else via[0].name,
            arm=None if via is None else via[1].name,
        )
        if outcome.fallback:
            FALLBACKS.labels(name, str(outcome.version)).inc()
        if entry.first_request_ms is None:
            entry.first_request_ms = elapsed_ms
            entry.first_request_warm = entry.warmup_ms is not None
        commit = self._served(
            name,
            outcome.version,
            parsed,
            request_id,
            elapsed_ms,
            outcome.predictions,
            outcome.probabilities,
            outcome.hits,
            outcome.fallback,
            via,
        )
        return PredictResult(result, timings, commit)

    def _served(
        self,
        name: str,
        version: int,
        parsed: ParsedInput,
        request_id: str,
        elapsed_ms: float,
        predictions: Sequence[Any],
        probabilities: Sequence[Any] | None,
        hits: Sequence[bool],
        fallback: bool,
        via: Via = None,
    ) -> CommitGroup | None:
        """Count an answered request in the version's series and log its rows; with group
        commit, the write the answer must wait for."""
        requests, latency = series(name, version)
        requests.inc()
        latency.observe(elapsed_ms / 1000)
        if self.prediction_log is not None:
            return self._log(
                ServedRequest(
                    request_id,
                    int(time.time() * 1000),
                    name,
                    version,
                    parsed.columns,
                    parsed.rows,
                    predictions,
                    probabilities,
                    hits,
                    fallback,
                    elapsed_ms,
                    parsed.entity_keys,
                    None if via is None else via[0].name,
                    None if via is None else via[1].name,
                    None if via is None else via[1].extra,
                )
            )
        return REFUSED if self._durable else None

    def _count_hits(self, name: str, rows: int) -> None:
        """Count ``rows`` answered from the cache (status counters and the Prometheus series)."""
        self.cache_hits[name] += rows
        cache_series(name)[0].inc(rows)

    async def _answer(
        self, entry: PoolEntry, parsed: ParsedInput, body: bytes, timings: dict[str, float]
    ) -> _Outcome:
        name, version, n = entry.name, entry.version, len(parsed.rows)
        mark = time.perf_counter()
        cached: list[Any] = [None] * n
        if self.cache is not None:
            cached = await self.cache.get(name, version, parsed.keys)
        misses = [
            i for i, c in enumerate(cached) if c is None or (parsed.probabilities and c[1] is None)
        ]
        self.cache_hits[name] += n - len(misses)
        self.cache_misses[name] += len(misses)
        hit_counter, miss_counter = cache_series(name)
        if n - len(misses):
            hit_counter.inc(n - len(misses))
        if misses:
            miss_counter.inc(len(misses))
        timings["cache"] = (time.perf_counter() - mark) * 1000
        outcome = _Outcome(
            predictions=[c[0] if c is not None else None for c in cached],
            probabilities=[c[1] if c is not None else None for c in cached],
            version=version,
            fallback=False,
            hits=[c is not None for c in cached],
        )
        for i in misses:
            outcome.hits[i] = False
        if not misses:
            timings["model"] = 0.0
            return outcome
        rows = [parsed.rows[i] for i in misses]
        mark = time.perf_counter()
        breaker = self.protection.breaker(name, version)
        if breaker.allow():
            try:
                predictions, probabilities = await judged_call(
                    self._call, self.executor, entry, rows, parsed.probabilities, parsed.columns
                )
            except ModelError:
                breaker.record(False)
                ERRORS.labels(name, str(version), "model_error").inc()
                raise
            except KeelError:  # the input, not the model: no verdict, but free a probe
                breaker.release()
                raise
            breaker.record(True)
        else:
            predictions, probabilities, answered = await self.protection.fallback(
                entry,
                body,
                misses,
                rows,
                parsed.probabilities,
                self._call,
                reparse=lambda older: self._parse(older, body, {}),
            )
            outcome.version, outcome.fallback = answered, True
        timings["model"] = (time.perf_counter() - mark) * 1000
        for j, i in enumerate(misses):
            outcome.predictions[i] = predictions[j]
            if probabilities is not None and outcome.probabilities is not None:
                outcome.probabilities[i] = probabilities[j]
        if self.cache is not None and not outcome.fallback:
            mark = time.perf_counter()
            entities = parsed.entity_keys
            await self.cache.put(
                name,
                version,
                [parsed.keys[i] for i in misses],
                [
                    (predictions[j], None if probabilities is None else probabilities[j])
                    for j in range(len(misses))
                ],
                None if entities is None else [entities[i] for i in misses],
            )
            timings["cache"] += (time.perf_counter() - mark) * 1000
        return outcome

    async def _call(
        self,
        entry: PoolEntry,
        rows: list[tuple[Any, ...]],
        probabilities: bool,
        columns: Sequence[str],
    ) -> BatchResult:
        if not self.settings.serving_batching or entry.spec.columns is None:
            # Without a signature each request names its own columns: never batched.
            BATCH_ROWS.labels(entry.name).observe(len(rows))
            loop = asyncio.get_running_loop()
            run = functools.partial(entry.run, rows, probabilities, columns)
            return await loop.run_in_executor(self.executor, run)
        key = (entry.name, entry.version)
        batcher = self.batchers.get(key)
        if batcher is None or batcher.owner is not entry:  # first call, or reloaded since
            if batcher is not None:
                self._spawn(batcher.close())
            batcher = MicroBatcher(
                entry.run,
                self.executor,
                max_rows=self.settings.serving_batch_max_size,
                max_wait_us=self.settings.serving_batch_max_wait_us,
                on_batch=BATCH_ROWS.labels(entry.name).observe,
                owner=entry,
            )
            self.batchers[key] = batcher
        return await batcher.submit(rows, probabilities)

    async def invalidate(
        self,
        *,
        model: str | None = None,
        version: int | None = None,
        entity: str | None = None,
        everything: bool = False,
    ) -> int:
        """Drop cache entries here and (with Redis) on every replica; returns entries dropped."""
        event = make_invalidation(
            model=model, version=version, entity=entity, everything=everything, origin=self.id
        )
        dropped = await self.cache.invalidate(event) if self.cache is not None else 0
        if self._redis is not None:
            await self._redis.publish(CHANNEL, event.to_json())
        return dropped

    def _alias_moved(self, name: str, alias: str, _version: int | None) -> None:
        """Registry listener (any thread): re-read a served alias now, not at the next poll."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and (name, alias) in self.aliases.states:
            loop.call_soon_threadsafe(self._refresh_alias, (name, alias))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background until it ends or :meth:`close` cancels it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refresh_alias(self, key: tuple[str, str]) -> None:
        # One re-read task per alias, reading again while moves keep coming: a storm of
        # events costs a few registry reads, not one task each.
        self._stale.add(key)
        if key not in self._rereads:
            self._rereads.add(key)
            self._spawn(self._reread_alias(key))

    async def _reread_alias(self, key: tuple[str, str]) -> None:
        try:
            while key in self._stale:
                self._stale.discard(key)  # a move from now on makes the loop read again
                await self.aliases.refresh([key])
        finally:
            self._rereads.discard(key)

    def apply(self, event: Invalidation) -> int:
        """Apply an event from another replica; returns local entries dropped."""
        if event.origin == self.id:
            return 0
        self.events_applied += 1
        if event.kind == "alias" and event.model and event.alias:
            if (event.model, event.alias) in self.aliases.states:
                self._refresh_alias((event.model, event.alias))
            return 0
        if event.kind == "deployment" and event.deployment:
            if self.routes.mark_stale(event.deployment):
                self._spawn(self.routes.reread(event.deployment))
            return 0
        return self.cache.drop_local(event) if self.cache is not None else 0

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
                f"{n}/{v}": {str(k): c for k, c in sorted(b.sizes.items())}
                for (n, v), b in self.batchers.items()
            },
            "preload_errors": self.preload_errors,
            "events_applied": self.events_applied,
            "background_tasks": len(self._tasks),
            "deployments": {**self.routes.describe(), "shadows": self.shadows.describe()},
        }

    # ---- deployments -------------------------------------------------------------------------
    def _deployment_changed(self, deployment: Any, _event: str) -> None:
        """Deployment-service listener (any thread): serve the committed change from the next
        request on (one dict assignment), before the call that made it returns."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self.ready:
            self.routes.apply(deployment)

    def _route_changed(self, before: DeploymentRoute | None, after: DeploymentRoute) -> None:
        """A route was replaced (any thread): on the loop, drop the cached predictions of
        versions that stopped serving it (R-SRV-06) and warm the versions it needs."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._after_route_change, before, after)

    def _after_route_change(self, before: DeploymentRoute | None, after: DeploymentRoute) -> None:
        if self.cache is not None:
            for version in versions_left(before, after):
                event = make_invalidation(model=after.model, version=version, origin=self.id)
                self.cache.drop_local(event)
        if after.status in UNFINISHED:  # both arms warm: an instant switch back
            for arm in (*after.arms.values(), *after.shadows):
                if self.pool.peek(after.model, arm.version) is None:
                    self._spawn(self._warm_quietly(after.model, arm.version))

    async def _warm_quietly(self, name: str, version: int) -> None:
        try:
            await self.pool.warm(name, version)
        except KeelError as exc:  # the first request of that arm reports it
            log.warning("cannot warm %s/%s for a deployment: %s", name, version, exc.message)
