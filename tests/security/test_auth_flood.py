"""A flood of wrong secrets for a known token id cannot starve legitimate calls (#15.3).

Before: 32 concurrent requests with a real token id and a wrong secret each ran an
argon2 check (19 MiB, tens of ms), so legitimate calls went from ~6 ms to ~1.7 s median
and the server grew to ~940 MB. Now failures are throttled per token id and per client
before hashing, at most a few checks run at once, and a repeated wrong token is
answered from a cache of recent failures.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from pathlib import Path

import httpx
from tests.conftest import server_process

from keel.config import Settings
from keel.services import open_services

FLOODERS = 32
FLOOD_S = 2.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _median_ms(client: httpx.Client, token: str, calls: int) -> float:
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        answer = client.get("/v1/experiments", headers={"authorization": f"Bearer {token}"})
        timings.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, answer.text
    return statistics.median(timings)


def _flood(url: str, token_id: str, stop: threading.Event, statuses: list[int]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            wrong = f"keel_{token_id}_{secrets.token_urlsafe(32)}"
            answer = client.get("/v1/experiments", headers={"authorization": f"Bearer {wrong}"})
            statuses.append(answer.status_code)


def test_wrong_secret_flood_keeps_legit_latency_and_memory_bounded(tmp_path: Path) -> None:
    home = tmp_path / "keel"
    services = open_services(Settings(home=home, auth="on"))
    token = services.auth.create_admin("admin").token
    services.close()
    token_id = token.split("_")[1]
    with (
        server_process(tmp_path, KEEL_HOME=str(home), KEEL_AUTH="on") as (url, process),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        quiet_ms = _median_ms(client, token, 40)
        rss_before = _rss_mb(process.pid)
        stop, statuses = threading.Event(), []
        flooders = [
            threading.Thread(target=_flood, args=(url, token_id, stop, statuses))
            for _ in range(FLOODERS)
        ]
        for thread in flooders:
            thread.start()
        time.sleep(0.5)  # the flood is under way
        deadline = time.monotonic() + FLOOD_S
        flooded = []
        while time.monotonic() < deadline:
            flooded.append(_median_ms(client, token, 5))
        rss_during = _rss_mb(process.pid)
        stop.set()
        for thread in flooders:
            thread.join()
    flood_ms = statistics.median(flooded)
    print(
        f"legit median {quiet_ms:.1f} ms quiet, {flood_ms:.1f} ms under flood; "
        f"RSS {rss_before:.0f} -> {rss_during:.0f} MB; flood answers {len(statuses)}: "
        f"{ {s: statuses.count(s) for s in set(statuses)} }"
    )
    assert set(statuses) <= {401, 429, 503}
    # bounded factor, with room for a busy CI machine: before the fix it was ~250x
    assert flood_ms < max(20 * quiet_ms, 150), (quiet_ms, flood_ms)
    assert rss_during - rss_before < 150, (rss_before, rss_during)
