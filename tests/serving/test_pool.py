"""Model pool and warm pool: memory budget, preloading with warm-up, cold vs warm first calls."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from tests.serving.conftest import Churn, register, set_alias, unique

from keel.config import Settings
from keel.errors import NotFound
from keel.services import open_services
from keel.serving.batcher import Lane
from keel.serving.gateway import Gateway, Target
from keel.serving.records import PredictionRecord


class Sink:
    """Records what the gateway hands to the prediction log."""

    def __init__(self) -> None:
        self.records: list[PredictionRecord] = []
        self.closed = False

    def append(self, record: PredictionRecord) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def run(settings: Settings, scenario: Callable[[Gateway], Any], sink: Sink | None = None) -> Any:
    """Start a gateway over ``settings``, run ``scenario(gateway)``, close everything."""
    services = open_services(settings)

    async def main() -> Any:
        gateway = Gateway(settings, services.registry, prediction_log=sink)
        await gateway.start()
        try:
            return await scenario(gateway)
        finally:
            await gateway.close()

    try:
        return asyncio.run(main())
    finally:
        services.close()


def body(rows: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"instances": rows, **extra}).encode()


@pytest.fixture
def two_models(churn: Churn, make_settings: Callable[..., Settings]) -> tuple[Settings, str, str]:
    settings = make_settings()
    first, second = unique("pool-a"), unique("pool-b")
    example = churn.train[churn.features].head(5)
    register(settings, first, churn.small, example)
    register(settings, second, churn.large, example)
    set_alias(settings, first, "champion", 1)
    return settings, first, second


def test_preloaded_models_are_warm_before_the_first_request(
    churn: Churn, two_models: tuple[Settings, str, str]
) -> None:
    base, first, second = two_models
    settings = base.model_copy(update={"serving_preload": f"{first}@champion"})
    rows = churn.rows(1)

    async def scenario(gateway: Gateway) -> dict[str, Any]:
        assert gateway.ready
        loaded = {(e.name, e.version) for e in gateway.pool.entries()}
        assert loaded == {(first, 1)}  # preloaded before start() returned
        await gateway.predict(Target(first, alias="champion"), body(rows), client_key="t")
        await gateway.predict(Target(second, version=1), body(rows), client_key="t")
        return {m["model"]: m for m in gateway.status()["models"]}

    models = run(settings, scenario)
    warm, cold = models[first], models[second]
    assert warm["warmup_ms"] > 0 and warm["first_request_warm"] is True
    assert cold["warmup_ms"] is None and cold["first_request_warm"] is False
    assert warm["load_ms"] > 0 and cold["load_ms"] > 0
    # the cold first request paid for the load; the warm one did not
    assert cold["first_request_ms"] > cold["load_ms"]


def test_pool_evicts_least_recently_used_beyond_its_budget(
    churn: Churn, two_models: tuple[Settings, str, str]
) -> None:
    base, first, second = two_models

    async def scenario(gateway: Gateway) -> list[list[tuple[str, int]]]:
        seen = []
        for name in (first, second, first):
            await gateway.predict(Target(name, version=1), body(churn.rows(1)), client_key="t")
            seen.append([(e.name, e.version) for e in gateway.pool.entries()])
        return seen

    services = open_services(base)
    sizes = [
        sum(f.size_bytes for f in services.registry.get_version(name, 1).files)
        for name in (first, second)
    ]
    services.close()
    # room for the larger of the two, not for both
    settings = base.model_copy(update={"serving_pool_max_bytes": max(sizes) + 1})
    seen = run(settings, scenario)
    assert seen == [[(first, 1)], [(second, 1)], [(first, 1)]]
    roomy = base.model_copy(update={"serving_pool_max_bytes": sum(sizes) + 1})
    assert run(roomy, scenario)[-1] == [(second, 1), (first, 1)]


def test_an_evicted_version_is_freed_not_kept_by_its_batcher(
    churn: Churn, two_models: tuple[Settings, str, str]
) -> None:
    base, first, second = two_models
    services = open_services(base)
    larger = max(
        sum(f.size_bytes for f in services.registry.get_version(name, 1).files)
        for name in (first, second)
    )
    services.close()
    settings = base.model_copy(
        update={"serving_pool_max_bytes": larger + 1, "serving_cache": False}
    )

    async def scenario(gateway: Gateway) -> tuple[bool, list[str]]:
        rows = body(churn.rows(1))
        await gateway.predict(Target(first, version=1), rows, client_key="t")
        evicted = weakref.ref(gateway.pool.peek(first, 1).model)  # type: ignore[union-attr]
        await gateway.predict(Target(second, version=1), rows, client_key="t")  # evicts it
        await asyncio.sleep(0.05)  # the retired batcher's worker ends
        gc.collect()
        batchers = [f"{n}/{v}" for n, v, _ in gateway.batchers]
        freed = evicted() is None
        # asked for again: loaded again and answered by a new batcher
        answer = await gateway.predict(Target(first, version=1), rows, client_key="t")
        assert answer.body["version"] == 1
        return freed, batchers

    freed, batchers = run(settings, scenario)
    assert batchers == [f"{second}/1"]
    assert freed, "the evicted model is still referenced"


def test_alias_move_is_warmed_before_it_is_served(
    churn: Churn, two_models: tuple[Settings, str, str]
) -> None:
    base, first, _ = two_models
    example = churn.train[churn.features].head(5)
    register(base, first, churn.large, example)  # v2
    settings = base.model_copy(
        update={"serving_preload": f"{first}@champion", "serving_alias_refresh_ms": 50}
    )

    async def scenario(gateway: Gateway) -> dict[str, Any]:
        set_alias(settings, first, "champion", 2)
        deadline = time.monotonic() + 10
        while gateway.aliases.states[(first, "champion")].serving != 2:
            assert time.monotonic() < deadline, "the new champion was never warmed"
            await asyncio.sleep(0.02)
        entry = gateway.pool.peek(first, 2)
        assert entry is not None and entry.warmup_ms is not None  # warmed, without traffic
        result = await gateway.predict(
            Target(first, alias="champion"), body(churn.rows(1)), client_key="t"
        )
        assert result.body["version"] == 2
        return {m["version"]: m for m in gateway.status()["models"] if m["model"] == first}

    models = run(settings, scenario)
    assert models[2]["first_request_warm"] is True


def test_every_served_row_goes_to_the_prediction_log(
    churn: Churn, two_models: tuple[Settings, str, str]
) -> None:
    settings, first, _ = two_models
    rows = churn.rows(3)
    sink = Sink()

    async def scenario(gateway: Gateway) -> Any:
        target = Target(first, version=1)
        first_answer = await gateway.predict(
            target, body(rows, probabilities=True, entity_keys=["a", "b", "c"]), client_key="t"
        )
        await gateway.predict(target, body(rows[:1]), client_key="t")
        with pytest.raises(NotFound):
            await gateway.predict(Target("missing", version=1), body(rows), client_key="t")
        return first_answer.body

    answer = run(settings, scenario, sink)
    assert sink.closed
    assert len(sink.records) == 4
    record = sink.records[1]
    assert record.request_id == answer["request_id"] and record.model == first
    assert record.version == 1 and record.entity_key == "b" and record.cached is False
    assert record.features == rows[1]
    assert record.output == answer["predictions"][1]
    assert record.probabilities == answer["probabilities"][1]
    assert record.latency_ms > 0 and abs(record.at_ms - time.time() * 1000) < 60_000
    assert sink.records[3].cached is True and sink.records[3].features == rows[0]


def test_requests_queued_on_a_replaced_entry_are_answered_not_cancelled(
    churn: Churn, two_models: tuple[Settings, str, str]
) -> None:
    """A version whose pool entry is replaced (loaded again) while requests wait in its old
    batcher: they are answered by the old entry, as an evicted version's are, never
    cancelled (a cancelled caller would get an error for a request nothing was wrong with)."""
    base, first, _ = two_models
    settings = base.model_copy(update={"serving_cache": False})

    async def scenario(gateway: Gateway) -> list[int]:
        rows = body(churn.rows(1))
        await gateway.predict(Target(first, version=1), rows, client_key="t")
        (key,) = [k for k in gateway.batchers if k[0] == first]
        old = gateway.batchers[key]
        assert old.lane is not None
        gate = threading.Event()
        held_run = old.lane.run

        def slow(rows: list[tuple[Any, ...]], probabilities: bool) -> Any:
            gate.wait(10)
            return held_run(rows, probabilities)

        old.lane = Lane(slow, old.lane.executor, owner=old.lane.owner)
        running = asyncio.ensure_future(
            gateway.predict(Target(first, version=1), rows, client_key="t")
        )
        await asyncio.sleep(0.05)  # its batch is in the model call
        queued = asyncio.ensure_future(
            gateway.predict(Target(first, version=1), rows, client_key="t")
        )
        await asyncio.sleep(0.05)  # waiting in the old batcher's queue
        entry = gateway.pool.peek(first, 1)
        assert entry is not None
        gateway.pool._entries[(first, 1)] = dataclasses.replace(entry)  # loaded again
        fresh = asyncio.ensure_future(
            gateway.predict(Target(first, version=1), rows, client_key="t")
        )
        await asyncio.sleep(0.05)  # the new entry's batcher replaced the old one
        gate.set()
        answers = await asyncio.gather(running, queued, fresh, return_exceptions=True)
        return [a if isinstance(a, BaseException) else a.body["version"] for a in answers]

    assert run(settings, scenario) == [1, 1, 1]
