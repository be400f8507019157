"""The gateway's background tasks stay bounded under storms of alias moves (#15.28)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pandas as pd
from serving_faults import Switchable
from tests.serving.conftest import register, set_alias, unique

from keel.config import Settings
from keel.services import open_services
from keel.serving.events import make_invalidation
from keel.serving.startup import start_gateway

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})
EVENTS = 100_000


def test_background_tasks_stay_bounded_under_100k_alias_moves_and_invalidations(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_alias_refresh_ms=60_000)  # no poll: events alone re-read
    name = unique("storm")
    register(settings, name, Switchable(), EXAMPLE)
    register(settings, name, Switchable(), EXAMPLE)
    set_alias(settings, name, "champion", 1)
    services = open_services(settings)

    async def storm() -> tuple[int, int, dict[str, object]]:
        gateway = await start_gateway(settings, services.registry)
        try:
            assert await gateway.aliases.version(name, "champion") == 1
            idle = gateway.status()["background_tasks"]
            moved = make_invalidation(model=name, alias="champion", origin="another-replica")
            dropped = make_invalidation(model=name, origin="another-replica")
            most = 0
            for i in range(EVENTS):
                gateway.apply(moved if i % 2 else dropped)
                gateway._alias_moved(name, "champion", 1)  # the registry listener's way in
                if i % 500 == 0:  # let queued re-reads run, as a busy loop would
                    await asyncio.sleep(0)
                    most = max(most, gateway.status()["background_tasks"])
            # a move after the storm is still seen: the coalesced re-read is not lost
            await asyncio.to_thread(set_alias, settings, name, "champion", 2)
            gateway.apply(moved)
            deadline = time.monotonic() + 10
            while gateway.status()["aliases"][f"{name}@champion"]["target"] != 2:
                assert time.monotonic() < deadline, "the alias move was never re-read"
                await asyncio.sleep(0.01)
            while gateway.status()["background_tasks"] > idle and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return idle, most, gateway.status()
        finally:
            await gateway.close()

    try:
        idle, most, status = asyncio.run(storm())
    finally:
        services.close()
    assert status["events_applied"] == EVENTS + 1
    assert most <= idle + 1, f"{most} background tasks during the storm ({idle} idle)"
    assert status["background_tasks"] == idle
