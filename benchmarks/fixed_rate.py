"""An open-loop load generator: POST bodies at a fixed offered rate, latency from schedule.

``wrk`` (and ``bench_serving``'s httpx workers) are closed loops: 16 clients each send the
next request when the last one is answered, so on a saturated server latency is just
concurrency / throughput. Here request ``i`` is due at ``start + i / rate`` whatever the
server does. A connection that is still busy when its next request is due sends it late,
and that request's latency counts from when it was due (no coordinated omission); a
request sent on time counts from when it was written (the timer's own lateness, up to a
millisecond, is the generator's, not the server's).

Plain HTTP/1.1 keep-alive over asyncio streams (uvloop when installed), no client
library: httpx spends ~0.3 ms of CPU per request, so one core could not offer the rates
a keel server answers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["run_fixed_rate"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _response(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise RuntimeError("chunked responses are not read by this generator")
    if length:
        await reader.readexactly(length)
    return status


async def _load(
    url: str | list[str], bodies: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    urls = [url] * len(bodies) if isinstance(url, str) else url
    parts = urlsplit(urls[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (urlsplit(target).path.encode(), host.encode(), port, len(body), body)
        for target, body in zip(urls, bodies, strict=True)
    ]
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    latencies: list[float] = []
    errors = late = 0
    sequence = itertools.count()
    start = time.perf_counter() + 0.05
    stop = start + seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors, late
        while True:
            i = next(sequence)
            due = start + i / rate
            if due >= stop:
                return
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                began = time.perf_counter()
            else:  # every connection was busy: the wait for one is the server's doing
                began = due
                late += now - due > 0.001
            writer.write(requests[i % len(requests)])
            try:
                status = await _response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                return
            latencies.append(time.perf_counter() - began)
            errors += status != 200

    try:
        await asyncio.gather(*(worker(r, w) for r, w in streams))
    finally:
        for _reader, writer in streams:
            writer.close()
    elapsed = max(time.perf_counter(), stop) - start
    ms = [s * 1000 for s in latencies]
    return {
        "offered_rps": rate,
        "rps": len(ms) / elapsed,
        "p50_ms": _percentile(ms, 50),
        "p99_ms": _percentile(ms, 99),
        "requests": len(ms),
        "errors": errors,
        "late": late,
    }


def run_fixed_rate(
    url: str | list[str],
    bodies: list[bytes],
    rate: float,
    seconds: float,
    *,
    connections: int = 32,
) -> dict[str, Any]:
    """Offer ``rate`` requests a second for ``seconds``; throughput, p50/p99 latency (ms),
    errors, and how many requests left over 1 ms late because no connection was free.
    ``url`` may be a list parallel to ``bodies`` (one host): body i goes to ``url[i]``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_load(url, bodies, rate, seconds, connections))
    return uvloop.run(_load(url, bodies, rate, seconds, connections))
