"""R-DEP-19 bulkhead on a real server: a challenger that sleeps 1 s per call runs in its own
partition, so the primary's answers stay fast; when the partition is full, requests routed
to the challenger are answered by the primary and shadow copies are dropped, both counted.

The gateway gets one predict thread here: without the partition the sleeping challenger
would hold that thread for a second per batch and the primary's answers would wait for it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from serving_faults import SLEEPY_THREADS, Sleepy
from tests.serving.conftest import Churn, live_gateway, register, test_settings, unique

from keel.services import open_services
from keel.serving.shadow import ShadowJob


def test_sleeping_challenger_cannot_slow_the_primary(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(
        tmp_path, serving_predict_threads=1, serving_batch_max_size=4, serving_cache=False
    )
    model = unique("bulk")
    example = churn.train[churn.features][:5]
    register(settings, model, churn.small, example)
    register(settings, model, Sleepy(), example)
    register(settings, model, Sleepy(), example)
    name = unique("bulkhead")
    services = open_services(settings)
    try:
        services.deployments.create(
            {
                "name": name,
                "model": model,
                "strategy": "ab",
                "unit": "request",
                "arms": [
                    {"version": 1, "role": "primary", "weight": 50},
                    {"version": 2, "role": "challenger", "weight": 50},
                    {"version": 3, "role": "shadow"},
                ],
            },
            actor="test",
        )
    finally:
        services.close()
    rows = churn.rows(16)
    answers: list[tuple[str, int, float]] = []
    failures: list[str] = []
    with live_gateway(settings) as live:
        gateway = live.gateway
        assert (gateway.bulkhead.slots, gateway.bulkhead.capacity) == (1, 4)
        with httpx.Client(base_url=live.url, timeout=30) as http:  # both arms loaded
            for _ in range(8):
                http.post(f"/v1/deployments/{name}/predict", json={"instances": rows[:1]})
        SLEEPY_THREADS.clear()  # from here on: the calls of live traffic
        stop = time.monotonic() + 4

        def client(k: int) -> None:
            with httpx.Client(base_url=live.url, timeout=30) as http:
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    response = http.post(
                        f"/v1/deployments/{name}/predict", json={"instances": [rows[k]]}
                    )
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    body = response.json()
                    answers.append((body["arm"], body["version"], elapsed))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 10  # a shadow copy may still be running
        while gateway.bulkhead.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gateway.bulkhead.busy == 0  # every place given back
        # A shadow copy that meets a full partition is dropped, not run. The shadow worker
        # rests 4 s after each 1 s copy (its 20 % budget), so the load above may never
        # make it meet one: fill the partition on the server's loop, then hand it a copy.
        route = gateway.routes.routes[name]
        body = json.dumps({"instances": rows[:1]}).encode()
        job = ShadowJob(route, route.shadows[0], body, "0" * 32)

        async def copy_into_full_partition() -> int:
            held = 0
            while gateway.bulkhead.enter():
                held += 1
            try:
                await gateway.shadows.run(job)
            finally:
                for _ in range(held):
                    gateway.bulkhead.leave()
            return held

        calls = len(SLEEPY_THREADS)
        held = asyncio.run_coroutine_threadsafe(copy_into_full_partition(), gateway._loop)
        assert held.result(timeout=10) == 4 and len(SLEEPY_THREADS) == calls  # not run
        # Places given back, copies of the load above still queued take them again (the
        # shadow worker runs a few at once, 1 s each, once no live request is in flight,
        # then rests 4 s): read the status while none of those runs.
        deadline = time.monotonic() + 10
        while True:
            status = httpx.get(f"{live.url}/v1/serving/status").json()
            if not status["deployments"]["bulkhead"]["busy"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        metrics = httpx.get(f"{live.url}/metrics").text
    assert not failures, failures[:3]
    primary = [elapsed for arm, version, elapsed in answers if arm == "primary" and version == 1]
    challenger = [elapsed for arm, _, elapsed in answers if arm == "challenger"]
    assert challenger and min(challenger) >= 0.9  # the challenger really sleeps
    # the primary answers hundreds of requests meanwhile, each far below the challenger's 1 s
    assert len(primary) > 100
    assert float(np.percentile(primary, 95)) < 0.5, np.percentile(primary, [50, 95, 99])
    # every challenger and shadow call ran on the partition's own thread
    assert SLEEPY_THREADS and all(t.startswith("keel-experimental") for t in SLEEPY_THREADS)
    refused = status["deployments"]["bulkhead"]["refused"]
    fallbacks = refused.get(f"{name}/challenger:primary_fallback", 0)
    assert fallbacks > 0  # the full partition sent challenger requests to the primary
    assert len(primary) >= fallbacks
    assert refused.get(f"{name}/shadow:shadow_dropped", 0) >= 1
    assert status["deployments"]["shadows"][name]["counts"].get("shadow:dropped", 0) >= 1
    assert status["deployments"]["bulkhead"]["busy"] == 0
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("keel_bulkhead_total{")
        and f'deployment="{name}"' in line
        and 'outcome="primary_fallback"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == fallbacks
