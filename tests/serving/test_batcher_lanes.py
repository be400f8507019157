"""A deployment's batcher: the arms' jobs share a cycle, one call per lane, and a confined
(experimental) lane never holds up the others."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from keel.serving.batcher import BatchResult, Lane, MicroBatcher


class Model:
    """A stand-in model: row ``(x,)`` → ``tag * x``; records every call's rows."""

    def __init__(self, tag: int, *, gate: threading.Event | None = None) -> None:
        self.tag = tag
        self.gate = gate
        self.calls: list[list[int]] = []
        self.refuse: set[int] = set()

    def __call__(self, rows: list[tuple[Any, ...]], probabilities: bool) -> BatchResult:
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        values = [int(row[0]) for row in rows]
        self.calls.append(values)
        if self.refuse & set(values):
            raise ValueError(f"refused {sorted(self.refuse & set(values))}")
        predictions = [self.tag * v for v in values]
        proba = [[0.0, float(v)] for v in values] if probabilities else None
        return predictions, proba


@pytest.fixture
def pools() -> Any:
    primary = ThreadPoolExecutor(2, thread_name_prefix="test-primary")
    partition = ThreadPoolExecutor(1, thread_name_prefix="test-partition")
    yield primary, partition
    primary.shutdown(wait=False, cancel_futures=True)
    partition.shutdown(wait=False, cancel_futures=True)


def test_two_lanes_share_a_cycle_one_call_each_and_every_job_gets_its_own_answer(
    pools: Any,
) -> None:
    primary_pool, partition = pools
    first, second = Model(1), Model(1000)
    a = Lane(first, primary_pool)
    b = Lane(second, partition, confined=True)

    async def scenario() -> list[BatchResult]:
        batcher = MicroBatcher(None, None, max_wait_us=2000)
        lanes = [a if i % 2 == 0 else b for i in range(12)]
        answers = await asyncio.gather(
            *(batcher.submit([(i,)], i % 3 == 0, lane) for i, lane in enumerate(lanes))
        )
        await batcher.close()
        assert sum(size * n for size, n in batcher.sizes.items()) == 12
        return answers

    answers = asyncio.run(scenario())
    for i, (predictions, proba) in enumerate(answers):
        assert predictions == [i if i % 2 == 0 else 1000 * i]
        if i % 3 == 0:
            assert proba == [[0.0, float(i)]]
    # queued together, so one cycle: one call per lane, each with only its own rows
    assert first.calls == [[0, 2, 4, 6, 8, 10]]
    assert second.calls == [[1, 3, 5, 7, 9, 11]]


def test_a_hanging_confined_lane_never_holds_up_the_primary(pools: Any) -> None:
    primary_pool, partition = pools
    gate = threading.Event()
    fast, stuck = Model(1), Model(1000, gate=gate)
    a = Lane(fast, primary_pool)
    b = Lane(stuck, partition, confined=True)

    async def scenario() -> None:
        batcher = MicroBatcher(None, None, max_wait_us=500)
        hung = asyncio.ensure_future(batcher.submit([(7,)], False, b))
        started = time.monotonic()
        for i in range(20):  # cycle after cycle while the experimental call hangs
            assert await batcher.submit([(i,)], False, a) == ([i], None)
        assert time.monotonic() - started < 2.0
        assert not hung.done()
        gate.set()  # the experimental call ends: its answer is handed out then
        assert await asyncio.wait_for(hung, 5) == ([7000], None)
        await batcher.close()

    asyncio.run(scenario())
    assert len(fast.calls) == 20


def test_a_failing_call_retries_its_own_jobs_alone_and_the_other_lane_is_answered(
    pools: Any,
) -> None:
    primary_pool, partition = pools
    first, second = Model(1), Model(1000)
    second.refuse = {3}
    a = Lane(first, primary_pool)
    b = Lane(second, partition, confined=True)

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(None, None, max_wait_us=1000)
        jobs = [batcher.submit([(i,)], False, a if i % 2 == 0 else b) for i in range(6)]
        answers = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.close()
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == ([0], None) and answers[2] == ([2], None) and answers[4] == ([4], None)
    assert answers[1] == ([1000], None) and answers[5] == ([5000], None)
    assert isinstance(answers[3], ValueError) and "refused [3]" in str(answers[3])
    assert second.calls[0] == [1, 3, 5]  # the batch, then each request alone
    assert sorted(map(tuple, second.calls[1:])) == [(1,), (3,), (5,)]


def test_a_batcher_without_a_lane_of_its_own_needs_the_jobs_lane() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(None, None)
        with pytest.raises(ValueError, match="name the job's lane"):
            await batcher.submit([(1,)], False)

    asyncio.run(scenario())


def test_a_version_batcher_still_runs_its_own_lane(pools: Any) -> None:
    primary_pool, _ = pools
    model = Model(2)

    async def scenario() -> list[BatchResult]:
        batcher = MicroBatcher(model, primary_pool, max_wait_us=1000)
        answers = await asyncio.gather(*(batcher.submit([(i,)], False) for i in range(8)))
        await batcher.close()
        return answers

    assert asyncio.run(scenario()) == [([2 * i], None) for i in range(8)]
    assert sum(len(call) for call in model.calls) == 8 and len(model.calls) < 8
