"""Adaptive micro-batching: concurrent requests to one model version share one predict call.

One worker task per model version takes the first waiting job, then every job already
queued (up to ``max_rows`` rows). Under load the queue fills while the previous batch runs,
so batches grow with concurrency and need no timer. When the last batch held more than one
job (there is concurrency), the worker also waits up to ``max_wait_us`` for more; a lone
request on an idle model is never delayed. Batches run one at a time per model, in a
thread, off the event loop.

When a batch of several requests fails, each request is run again alone: a model that
refuses one caller's rows (NaN where it takes none) answers the others, and only that
caller gets the error. ``run`` must return one output per row (``keel.serving.outputs``
checks it), or the slices handed back would be other callers' predictions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchResult", "Job", "MicroBatcher"]

BatchResult = tuple[list[Any], list[list[float]] | None]
RunBatch = Callable[[list[tuple[Any, ...]], bool], BatchResult]


@dataclass(slots=True)
class Job:
    """Rows of one request and the future its slice of the batch result goes to."""

    rows: list[tuple[Any, ...]]
    probabilities: bool
    future: asyncio.Future[BatchResult] = field(repr=False)


class MicroBatcher:
    """Coalesces jobs for one model version into calls of ``run(rows, probabilities)``."""

    def __init__(
        self,
        run: RunBatch,
        executor: Executor,
        *,
        max_rows: int = 64,
        max_wait_us: int = 500,
        on_batch: Callable[[int], None] | None = None,
        owner: object = None,
    ) -> None:
        self._run = run
        self.owner = owner  # what the batches run on (the gateway's pool entry)
        self._executor = executor
        self.max_rows = max_rows
        self.max_wait_s = max_wait_us / 1_000_000
        self._on_batch = on_batch
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._last_jobs = 1
        self.sizes: Counter[int] = Counter()  # rows per batch → how many batches

    async def submit(self, rows: list[tuple[Any, ...]], probabilities: bool) -> BatchResult:
        """Queue ``rows`` and wait for their predictions (and probabilities when asked)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(rows, probabilities, future))
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
            first = await self._queue.get()
            jobs = [first]
            rows = self._drain(jobs, len(first.rows))
            if rows < self.max_rows and self.max_wait_s > 0 and (self._last_jobs > 1):
                await asyncio.sleep(self.max_wait_s)
                rows = self._drain(jobs, rows)
            jobs = [job for job in jobs if not job.future.done()]  # callers that timed out
            self._last_jobs = len(jobs)
            if not jobs:
                continue
            self.sizes[rows] += 1
            if self._on_batch is not None:
                self._on_batch(rows)
            batch_rows = [row for job in jobs for row in job.rows]
            wants_proba = any(job.probabilities for job in jobs)
            try:
                predictions, probabilities = await loop.run_in_executor(
                    self._executor, self._run, batch_rows, wants_proba
                )
            except Exception as exc:
                if len(jobs) == 1:
                    if not jobs[0].future.done():
                        jobs[0].future.set_exception(exc)
                    continue
                # One request's rows may be what the model refuses (issue 15 item 7): each
                # request runs again alone, so the others are answered and only the caller
                # whose rows fail gets the error.
                for job in jobs:
                    await self._alone(loop, job)
                continue
            start = 0
            for job in jobs:
                end = start + len(job.rows)
                if not job.future.done():
                    proba = probabilities[start:end] if probabilities is not None else None
                    job.future.set_result((predictions[start:end], proba))
                start = end

    async def _alone(self, loop: asyncio.AbstractEventLoop, job: Job) -> None:
        """Run one job's rows by themselves (after its batch failed) and settle its future."""
        if job.future.done():
            return
        try:
            result = await loop.run_in_executor(
                self._executor, self._run, job.rows, job.probabilities
            )
        except Exception as exc:  # this caller's own error
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(result)

    async def close(self) -> None:
        """Stop the worker; queued callers get a CancelledError."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()
