"""Shadow arms: copies of live requests answered off the response path, logged, never returned.

The gateway offers each deployment request to :meth:`ShadowQueue.offer` after choosing its
live arm; a copy per shadow arm goes on the deployment's bounded ``asyncio.Queue``
(``shadow.queue_size`` of the policy, default 1,000). A full queue drops the copy, never
waits: drops are counted in ``keel_shadow_requests_total{outcome="dropped"}`` and in the
deployment's entry of ``/v1/serving/status``. A few worker tasks per deployment run the
copies through the shadow version (pool, parse, cache, its own breaker, the micro-batcher)
and log the answer in the prediction log with the live request's ``request_id``, the
deployment and the shadow arm's name, so the controller compares agreement, prediction
distribution and latency per arm (:mod:`keel.deploy.armstats`). A shadow that raises is
logged as an error row (``extra.error``) and counted; the live answer has already gone.

Shadow work yields to live traffic: a worker starts a batch of copies only when no live
request of the gateway is in flight (:class:`LiveRequests`) or its copy has waited
:data:`MAX_YIELD_S` for one, takes at most :data:`BATCH` copies at a time, so a request
that arrives meanwhile shares the CPU with one short model call at most, and rests after
each batch (:data:`BUDGET`). A server saturated by live traffic never turns idle: it
answers a batch per wait, the rest wait in the bounded queue and, once it is full, are
dropped and counted (``benchmarks/bench_deploy_route.py`` measures both a saturated and
a fixed-rate load).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel._metrics import HotCounter
from keel.errors import KeelError, ModelError, Unavailable
from keel.serving.deployroutes import ArmRoute, DeploymentRoute
from keel.serving.records import ServedRequest

if TYPE_CHECKING:
    from keel.serving.gateway import Gateway

__all__ = ["SHADOW_REQUESTS", "LiveRequests", "ShadowJob", "ShadowQueue"]

log = logging.getLogger("keel.serving")

# lock-free (keel._metrics): every deployment request with a shadow arm updates it
SHADOW_REQUESTS = HotCounter(
    "keel_shadow_requests_total",
    "Copies of live requests for shadow arms, by outcome (answered, error, dropped)",
    ["deployment", "arm", "outcome"],
)
#: Worker tasks per deployment.
WORKERS = 1
#: Share of wall time a deployment's shadow worker may spend on copies: after a copy that
#: took t seconds it rests t * (1 / BUDGET - 1). R-DEP-05 prices shadowing at 10-20 % extra
#: compute; under load the queue fills and further copies are dropped (counted) instead of
#: taking CPU from live requests (measured: benchmarks/bench_deploy_route.py).
BUDGET = 0.2
#: Copies a worker takes from the queue at once (they share one model call). Small: a live
#: request that arrives while they run waits for the CPU behind this one call at most
#: (16 copies took ~0.3 ms of model time on the benchmark's server, 4 take ~0.1 ms).
BATCH = 4
#: Longest a worker waits for a quiet moment before it runs its copies anyway (still within
#: BUDGET): a server whose live traffic never pauses still shadows a few copies a second, so
#: a shadow phase's ``min_samples`` is reached instead of every copy being dropped.
MAX_YIELD_S = 0.25


class LiveRequests:
    """How many live requests are between the start and the end of ``Gateway.predict``;
    shadow workers wait in :meth:`quiet` until there are none (the event changes only
    when the count leaves or reaches zero, so a request pays two integer updates)."""

    __slots__ = ("count", "_idle")

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        """A live request started."""
        self.count += 1
        if self.count == 1:
            self._idle.clear()

    def leave(self) -> None:
        """A live request ended (answered or failed)."""
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def quiet(self) -> None:
        """Return when no live request is in flight, after letting the requests read off
        the sockets in this turn of the event loop start first."""
        while True:
            while self.count:
                await self._idle.wait()
            await asyncio.sleep(0)
            if not self.count:
                return


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One copy of a live request for one shadow arm."""

    route: DeploymentRoute
    arm: ArmRoute
    body: bytes
    request_id: str


class _Lane:
    """The bounded queue of one deployment and its workers."""

    __slots__ = ("queue", "workers")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=size)
        self.workers: list[asyncio.Task[None]] = []


class ShadowQueue:
    """Per-deployment bounded queues of shadow copies, drained by background workers."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._lanes: dict[str, _Lane] = {}
        self.counts: dict[str, Tally[str]] = {}
        #: Live requests in flight: copies run only when there are none.
        self.live = LiveRequests()
        # The replica report copies the counts from another thread while the event loop
        # adds keys to them: copies and writes take this lock, so a copy never sees the
        # dict change size (uncontended it costs ~0.1 us per copy counted).
        self._counts_lock = threading.Lock()
        self._series: dict[tuple[str, str, str], Any] = {}
        # The replica reports carry these counts: drops per replica in the status (R-DEP-06).
        register = getattr(gateway.deployments, "add_shadow_source", None)
        if register is not None:
            register(gateway.id, self.counts_of)

    def offer(self, route: DeploymentRoute, request_id: str, body: bytes) -> None:
        """Queue a copy of a live request for each shadow arm of ``route``; never blocks."""
        lane = self._lanes.get(route.name)
        if lane is None or lane.queue.maxsize != route.queue_size:
            lane = self._open(route)
        queue = lane.queue
        for arm in route.shadows:
            if queue.full():  # no job built, no exception raised: drops cost little
                self._count(route.name, arm.name, "dropped")
            else:
                queue.put_nowait(ShadowJob(route, arm, body, request_id))

    def _open(self, route: DeploymentRoute) -> _Lane:
        old = self._lanes.get(route.name)
        lane = _Lane(route.queue_size)
        loop = asyncio.get_running_loop()
        lane.workers = [loop.create_task(self._drain(lane)) for _ in range(WORKERS)]
        self._lanes[route.name] = lane
        if old is not None:  # a new queue size: the old lane finishes what it holds
            for task in old.workers:
                loop.call_later(30, task.cancel)
        return lane

    async def _drain(self, lane: _Lane) -> None:
        queue = lane.queue
        while True:
            jobs = [await queue.get()]
            with contextlib.suppress(TimeoutError):  # the primary first (module docstring)
                await asyncio.wait_for(self.live.quiet(), MAX_YIELD_S)
            while len(jobs) < BATCH and not queue.empty():
                jobs.append(queue.get_nowait())
            started = time.perf_counter()
            # together: the shadow version's micro-batcher answers them in one model call
            results = await asyncio.gather(*map(self.run, jobs), return_exceptions=True)
            for job, result in zip(jobs, results, strict=True):
                queue.task_done()
                if isinstance(result, Exception):  # never let one copy stop the worker
                    log.error(
                        "shadow copy for %s/%s failed",
                        job.route.name,
                        job.arm.name,
                        exc_info=result,
                    )
            await asyncio.sleep((time.perf_counter() - started) * (1 / BUDGET - 1))

    async def run(self, job: ShadowJob) -> None:
        """Answer one copy with the shadow version and log it (errors logged as rows);
        dropped (counted) when the bulkhead's partition is full (R-DEP-19)."""
        gateway = self.gateway
        if not gateway.bulkhead.enter():
            gateway.bulkhead.drop_shadow(job.route, job.arm)
            self._count(job.route.name, job.arm.name, "dropped")
            return
        try:
            await self._run(job)
        finally:
            gateway.bulkhead.leave()

    async def _run(self, job: ShadowJob) -> None:
        gateway = self.gateway
        model, version = job.route.model, job.arm.version
        started = time.perf_counter()
        columns: Any = ()
        rows: Any = [()]
        outputs: list[Any] = [None]
        probabilities: list[Any] | None = None
        hits = [False]
        entity_keys = None
        event_ms: int | None = None  # the live request's event time (a replay), if given
        error: str | None = None
        try:
            async with asyncio.timeout(gateway.settings.serving_timeout_s):
                entry = await gateway.pool.get(model, version)
                parsed = await gateway._parse(entry, job.body, {})
                columns, rows, entity_keys = parsed.columns, parsed.rows, parsed.entity_keys
                event_ms = parsed.event_ms
                outputs, probabilities, hits = await self._answer(entry, parsed)
        except Exception as exc:  # whatever the shadow does, the live answer is gone
            message = exc.message if isinstance(exc, KeelError) else repr(exc)
            error = f"{type(exc).__name__}: {message}"
            n = len(rows)
            outputs, probabilities, hits = [None] * n, None, [False] * n
        latency_ms = (time.perf_counter() - started) * 1000
        self._count(job.route.name, job.arm.name, "error" if error else "answered")
        extra = job.arm.shadow_extra
        if error is not None:
            extra = json.dumps({**json.loads(extra), "error": error})
        if gateway.prediction_log is not None:
            # With group commit this returns the write's group: nobody waits for a shadow row.
            gateway._log(
                ServedRequest(
                    job.request_id,
                    int(time.time() * 1000) if event_ms is None else event_ms,
                    model,
                    version,
                    columns,
                    rows,
                    outputs,
                    probabilities,
                    hits,
                    False,
                    latency_ms,
                    entity_keys,
                    deployment=job.route.name,
                    arm=job.arm.name,
                    extra=extra,
                )
            )

    async def _answer(self, entry: Any, parsed: Any) -> tuple[list[Any], list[Any], list[bool]]:
        """Predictions from the cache or the shadow version, behind its own breaker."""
        gateway = self.gateway
        n = len(parsed.rows)
        cached: list[Any] = [None] * n
        if gateway.cache is not None:
            cached = await gateway.cache.get(entry.name, entry.version, parsed.keys)
        misses = [i for i, c in enumerate(cached) if c is None]
        outputs = [c[0] if c is not None else None for c in cached]
        probabilities = [c[1] if c is not None else None for c in cached]
        if misses:
            breaker = gateway.protection.breaker(entry.name, entry.version)
            if not breaker.allow():  # a failing shadow stops costing model calls
                raise Unavailable("the shadow version's circuit breaker is open", field="arm")
            rows = [parsed.rows[i] for i in misses]
            try:
                predicted, probs = await gateway._experimental_call(
                    entry, rows, parsed.probabilities, parsed.columns
                )
            except Exception as exc:
                breaker.record(False)
                if isinstance(exc, KeelError):
                    raise
                raise ModelError(f"shadow model raised {type(exc).__name__}: {exc}") from exc
            breaker.record(True)
            for j, i in enumerate(misses):
                outputs[i] = predicted[j]
                probabilities[i] = None if probs is None else probs[j]
            if gateway.cache is not None:
                await gateway.cache.put(
                    entry.name,
                    entry.version,
                    [parsed.keys[i] for i in misses],
                    [(outputs[i], probabilities[i]) for i in misses],
                    None,
                )
        return outputs, probabilities, [c is not None for c in cached]

    def _count(self, deployment: str, arm: str, outcome: str) -> None:
        key = (deployment, arm, outcome)
        series = self._series.get(key)
        if series is None:  # .labels() costs microseconds: once per series
            series = self._series[key] = SHADOW_REQUESTS.labels(*key)
        series.inc()
        with self._counts_lock:
            counts = self.counts.get(deployment)
            if counts is None:
                counts = self.counts[deployment] = Tally()
            counts[f"{arm}:{outcome}"] += 1

    def counts_of(self, deployment: str) -> dict[str, int]:
        """This replica's copies for ``deployment`` by ``arm:outcome`` since it started.

        Safe to call from any thread: a copy taken under the counts' lock."""
        with self._counts_lock:
            return {key: count for key, count in self.counts.get(deployment, {}).items()}

    def describe(self) -> dict[str, Any]:
        """Per deployment: queued copies and counts by ``arm:outcome``."""
        return {
            name: {
                "queued": lane.queue.qsize(),
                "queue_size": lane.queue.maxsize,
                "counts": self.counts_of(name),
            }
            for name, lane in list(self._lanes.items())
        }

    async def close(self) -> None:
        """Cancel the workers (copies still queued are not answered)."""
        for lane in self._lanes.values():
            for task in lane.workers:
                task.cancel()
            for task in lane.workers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._lanes.clear()
