"""Shadow copies yield to live traffic: a worker starts copies only when no live request is
in flight (or after waiting MAX_YIELD_S for that), a few at a time; a saturated queue drops
(and counts) what does not fit."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from keel.serving import shadow
from keel.serving.shadow import LiveRequests, ShadowJob, ShadowQueue


def _queue(size: int) -> tuple[ShadowQueue, Any]:
    """A shadow queue whose copies go to the test's ``run`` instead of a model."""
    queue = ShadowQueue(SimpleNamespace(deployments=None))  # type: ignore[arg-type]
    arm = SimpleNamespace(name="shadow")
    return queue, SimpleNamespace(name="dep", queue_size=size, shadows=(arm,))


def test_copies_wait_for_live_requests_then_run_a_few_at_a_time() -> None:
    async def scenario() -> None:
        queue, route = _queue(100)
        seen: list[list[str]] = []

        async def run(job: ShadowJob) -> None:
            seen.append([job.request_id, str(queue.live.count)])

        queue.run = run  # type: ignore[method-assign]
        queue.live.enter()  # a live request in flight
        for i in range(10):
            queue.offer(route, f"r{i}", b"{}")
        await asyncio.sleep(0.05)
        assert seen == []  # nothing runs beside the live request
        queue.live.enter()
        queue.live.leave()
        await asyncio.sleep(0.05)
        assert seen == []  # still one in flight
        queue.live.leave()
        await asyncio.sleep(0.2)
        assert [r for r, _ in seen] == [f"r{i}" for i in range(10)]
        assert {count for _, count in seen} == {"0"}  # never while a live request ran
        await queue.close()

    asyncio.run(scenario())


def test_a_worker_takes_at_most_batch_copies_at_once(monkeypatch: Any) -> None:
    monkeypatch.setattr(shadow, "BUDGET", 1.0)  # no rest between batches: only sizes matter

    async def scenario() -> None:
        queue, route = _queue(100)
        running = 0
        most = 0

        async def run(job: ShadowJob) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.01)
            running -= 1

        queue.run = run  # type: ignore[method-assign]
        for i in range(3 * shadow.BATCH):
            queue.offer(route, f"r{i}", b"{}")
        await asyncio.sleep(0.3)
        assert most == shadow.BATCH
        assert queue.describe()["dep"]["queued"] == 0
        await queue.close()

    asyncio.run(scenario())


def test_a_full_queue_drops_and_counts_while_live_traffic_never_stops() -> None:
    async def scenario() -> None:
        queue, route = _queue(5)
        ran: list[str] = []

        async def run(job: ShadowJob) -> None:
            ran.append(job.request_id)

        queue.run = run  # type: ignore[method-assign]
        queue.live.enter()
        for i in range(12):
            queue.offer(route, f"r{i}", b"{}")
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        # the worker holds the first copy, waiting; five wait in the queue; six dropped
        assert ran == []
        assert queue.counts_of("dep") == {"shadow:dropped": 6}
        queue.live.leave()
        await asyncio.sleep(0.2)
        assert ran == [f"r{i}" for i in range(6)]
        await queue.close()

    asyncio.run(scenario())


def test_live_traffic_that_never_pauses_still_gets_copies_answered_after_the_wait() -> None:
    async def scenario() -> None:
        queue, route = _queue(100)
        ran: list[float] = []
        loop = asyncio.get_running_loop()

        async def run(job: ShadowJob) -> None:
            ran.append(loop.time())

        queue.run = run  # type: ignore[method-assign]
        queue.live.enter()  # a live request always in flight
        start = loop.time()
        for i in range(3 * shadow.BATCH):
            queue.offer(route, f"r{i}", b"{}")
        await asyncio.sleep(shadow.MAX_YIELD_S / 2)
        assert ran == []  # still yielding to the live request
        await asyncio.sleep(shadow.MAX_YIELD_S * 4)
        # a batch per wait: the copies are answered although the server never went idle
        assert len(ran) >= shadow.BATCH
        assert min(ran) - start >= shadow.MAX_YIELD_S * 0.9
        queue.live.leave()
        await queue.close()

    asyncio.run(scenario())


def test_live_requests_quiet_returns_at_once_when_idle() -> None:
    async def scenario() -> None:
        live = LiveRequests()
        await asyncio.wait_for(live.quiet(), 1)
        live.enter()
        waiter = asyncio.ensure_future(live.quiet())
        await asyncio.sleep(0.02)
        assert not waiter.done()
        live.leave()
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())
