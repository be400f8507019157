"""Adaptive micro-batching: concurrent requests to one model version share one predict call.

One worker task per batcher takes the first waiting job, then every job already queued
(up to ``max_rows`` rows). Under load the queue fills while the previous batch runs, so
batches grow with concurrency and need no timer. When the last batch held more than one
job (there is concurrency), the worker also waits up to ``max_wait_us`` for more; a lone
request on an idle model is never delayed. Batches run one at a time per batcher, in a
thread, off the event loop.

A batcher serves one :class:`Lane` (a model version on some threads), or, for a
deployment, every arm of it: each job then names its lane, and one *cycle* takes the
jobs of all arms and makes one call per lane, the calls running side by side on their
own threads. A deployment's requests stay one convoy so: with a batcher per version, the
arms' batches finished at different times and each re-formed from whatever had arrived,
so two arms 50/50 made 4.4-row calls where the alias route made 15.5-row ones, and each
call costs the event loop ~75 µs besides the model (``benchmarks/bench_deploy_route.py``,
model path). A *confined* lane (an experimental arm in the bulkhead's partition,
R-DEP-19) is waited for at most ``max_wait_us`` after the others: an arm that is slow or
hangs never holds up the next cycle of the primary's requests longer than batching may
anyway; its answers arrive when its call ends.

When a batch of several requests fails, each request is run again alone: a model that
refuses one caller's rows (NaN where it takes none) answers the others, and only that
caller gets the error. ``run`` must return one output per row (``keel.serving.outputs``
checks it), or the slices handed back would be other callers' predictions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchResult", "Job", "Lane", "MicroBatcher"]

BatchResult = tuple[list[Any], list[list[float]] | None]
RunBatch = Callable[[list[tuple[Any, ...]], bool], BatchResult]


@dataclass(frozen=True, slots=True, eq=False)
class Lane:
    """Where a batch runs: ``run(rows, probabilities)`` on ``executor``.

    ``owner`` is what ``run`` belongs to (the gateway's pool entry: a reloaded version is
    a new lane); ``confined`` marks an experimental arm's lane (see the module docstring).
    Lanes compare by identity: jobs of one lane object share a call.
    """

    run: RunBatch
    executor: Executor
    on_batch: Callable[[int], None] | None = None
    owner: object = None
    confined: bool = False


@dataclass(slots=True)
class Job:
    """Rows of one request, its lane, and the future its slice of the batch result goes to."""

    rows: list[tuple[Any, ...]]
    probabilities: bool
    lane: Lane
    future: asyncio.Future[BatchResult] = field(repr=False)


class MicroBatcher:
    """Coalesces jobs into calls of ``run(rows, probabilities)``, one per lane per cycle.

    ``run`` and ``executor`` make the batcher's own lane (a version's batcher); a
    deployment's batcher is made with ``run=None`` and every job names its lane.
    """

    def __init__(
        self,
        run: RunBatch | None,
        executor: Executor | None,
        *,
        max_rows: int = 64,
        max_wait_us: int = 500,
        on_batch: Callable[[int], None] | None = None,
        owner: object = None,
    ) -> None:
        self.lane = (
            None if run is None or executor is None else Lane(run, executor, on_batch, owner)
        )
        self.max_rows = max_rows
        self.max_wait_s = max_wait_us / 1_000_000
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._last_jobs = 1
        self._busy = False  # a batch is being formed or its held calls run
        self._retired = False
        self._retries: set[asyncio.Task[None]] = set()
        self.sizes: Counter[int] = Counter()  # rows per model call → how many calls

    @property
    def owner(self) -> object:
        """What the batcher's own lane runs on (the gateway's pool entry), if it has one."""
        return None if self.lane is None else self.lane.owner

    async def submit(
        self, rows: list[tuple[Any, ...]], probabilities: bool, lane: Lane | None = None
    ) -> BatchResult:
        """Queue ``rows`` (on ``lane``, else the batcher's own) and wait for their
        predictions (and probabilities when asked)."""
        chosen = lane or self.lane
        if chosen is None:
            raise ValueError("this batcher has no lane of its own: name the job's lane")
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._work())
        future: asyncio.Future[BatchResult] = loop.create_future()
        self._queue.put_nowait(Job(rows, probabilities, chosen, future))
        return await future

    def _drain(self, jobs: list[Job], rows: int) -> int:
        while rows < self.max_rows and not self._queue.empty():
            job = self._queue.get_nowait()
            jobs.append(job)
            rows += len(job.rows)
        return rows

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._retired and self._queue.empty():
                return
            self._busy = False
            first = await self._queue.get()
            self._busy = True
            jobs = [first]
            rows = self._drain(jobs, len(first.rows))
            if rows < self.max_rows and self.max_wait_s > 0 and (self._last_jobs > 1):
                await asyncio.sleep(self.max_wait_s)
                self._drain(jobs, rows)
            jobs = [job for job in jobs if not job.future.done()]  # callers that timed out
            self._last_jobs = len(jobs)
            if not jobs:
                continue
            lane = jobs[0].lane
            if lane.confined or any(job.lane is not lane for job in jobs):
                await self._cycle(loop, jobs)
                continue
            try:  # one lane, the common case: straight through
                result = await self._dispatch(loop, lane, jobs)
            except Exception as exc:
                await self._failed(loop, jobs, exc)
                continue
            self._hand_out(jobs, result)

    async def _cycle(self, loop: asyncio.AbstractEventLoop, jobs: list[Job]) -> None:
        """One call per lane of ``jobs``, side by side; confined lanes waited for at most
        ``max_wait_s`` after the others (their answers are handed out when they end)."""
        by_lane: dict[Lane, list[Job]] = {}
        for job in jobs:
            by_lane.setdefault(job.lane, []).append(job)
        held: list[asyncio.Future[BatchResult]] = []
        apart: list[asyncio.Future[BatchResult]] = []
        for lane, lane_jobs in by_lane.items():
            call = self._dispatch(loop, lane, lane_jobs)
            call.add_done_callback(functools.partial(self._ended, loop, lane_jobs))
            (apart if lane.confined else held).append(call)
        for call in held:  # its failure is handed out by _ended
            with contextlib.suppress(Exception):
                await call
        running = [call for call in apart if not call.done()]
        if running:
            await asyncio.wait(running, timeout=self.max_wait_s)

    def _dispatch(
        self, loop: asyncio.AbstractEventLoop, lane: Lane, jobs: list[Job]
    ) -> asyncio.Future[BatchResult]:
        """Start the call of ``jobs``' rows on ``lane``."""
        rows = [row for job in jobs for row in job.rows]
        self.sizes[len(rows)] += 1
        if lane.on_batch is not None:
            lane.on_batch(len(rows))
        wants_proba = any(job.probabilities for job in jobs)
        return loop.run_in_executor(lane.executor, lane.run, rows, wants_proba)

    @staticmethod
    def _hand_out(jobs: list[Job], result: BatchResult) -> None:
        """Each job's slice of a call's result."""
        predictions, probabilities = result
        start = 0
        for job in jobs:
            end = start + len(job.rows)
            if not job.future.done():
                proba = probabilities[start:end] if probabilities is not None else None
                job.future.set_result((predictions[start:end], proba))
            start = end

    def _ended(
        self, loop: asyncio.AbstractEventLoop, jobs: list[Job], call: asyncio.Future[BatchResult]
    ) -> None:
        """A call of a cycle ended: hand out its result, or retry its jobs alone."""
        if call.cancelled():
            for job in jobs:
                job.future.cancel()
            return
        exc = call.exception()
        if exc is None:
            self._hand_out(jobs, call.result())
            return
        retry = loop.create_task(self._failed(loop, jobs, exc))
        self._retries.add(retry)  # a reference until it ends (the loop keeps weak ones)
        retry.add_done_callback(self._retries.discard)

    async def _failed(
        self, loop: asyncio.AbstractEventLoop, jobs: list[Job], exc: BaseException
    ) -> None:
        """A call failed: its one job gets the error, or each job runs again alone."""
        if len(jobs) == 1:
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        # One request's rows may be what the model refuses (issue 15 item 7): each
        # request runs again alone, so the others are answered and only the caller
        # whose rows fail gets the error.
        for job in jobs:
            await self._alone(loop, job)

    async def _alone(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        """Run one job's rows by themselves (after its batch failed) and settle its future."""
        if job.future.done():
            return
        try:
            result = await loop.run_in_executor(
                job.lane.executor, job.lane.run, job.rows, job.probabilities
            )
        except Exception as exc:  # this caller's own error
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(result)

    def retire(self) -> None:
        """Let the worker end once nothing is queued (its version left the pool): jobs
        already queued are still answered, and a late one starts it again."""
        self._retired = True
        if self._task is not None and not self._busy and self._queue.empty():
            self._task.cancel()  # waiting for a job: nothing of anyone's is in flight

    async def close(self) -> None:
        """Stop the worker; queued callers get a CancelledError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for retry in list(self._retries):
            retry.cancel()
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()
