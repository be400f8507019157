"""Lock-free hot-path series expose exactly what prometheus_client's metrics expose."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from keel._metrics import HotCounter, HotHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _without_created(text: str) -> str:
    """The exposition with creation times (which differ by construction) blanked."""
    return re.sub(r"(_created(?:\{[^}]*\})?) \S+", r"\1 T", text)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.floats(0, 100, allow_nan=False),
            st.floats(0, 2, allow_nan=False),
        ),
        max_size=40,
    )
)
def test_same_samples_as_prometheus_client(events: list[tuple[str, float, float]]) -> None:
    plain, hot = CollectorRegistry(), CollectorRegistry()
    counter = Counter("t_requests_total", "requests", ["model"], registry=plain)
    histogram = Histogram(
        "t_latency_seconds", "latency", ["model"], buckets=BUCKETS, registry=plain
    )
    hot_counter = HotCounter("t_requests_total", "requests", ["model"], registry=hot)
    hot_histogram = HotHistogram("t_latency_seconds", "latency", ["model"], BUCKETS, registry=hot)
    for label, amount, seconds in events:
        counter.labels(label).inc(amount)
        hot_counter.labels(label).inc(amount)
        histogram.labels(label).observe(seconds)
        hot_histogram.labels(label).observe(seconds)

    for render in (generate_latest, generate_openmetrics):
        expected, got = render(plain).decode(), render(hot).decode()
        assert _without_created(got) == _without_created(expected)


def test_threads_never_lose_an_update() -> None:
    counter = HotCounter("t_threads_total", "x", ["k"], registry=None)
    histogram = HotHistogram("t_threads_seconds", "x", ["k"], BUCKETS, registry=None)
    child, timing = counter.labels("k"), histogram.labels("k")

    def work() -> None:
        for _ in range(20_000):
            child.inc()
            timing.observe(0.005)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert child.value() == 160_000
    totals = timing.totals()
    assert totals[1] == 160_000 and sum(totals[:-1]) == 160_000  # all in the 10 ms bucket
    assert totals[-1] == pytest.approx(800.0)


def test_bad_use_is_refused() -> None:
    counter = HotCounter("t_bad_total", "x", ["model", "version"], registry=None)
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="only go up"):
        counter.labels("m", 1).inc(-1)
    registry = CollectorRegistry()
    HotCounter("t_twice_total", "x", ["k"], registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("t_twice_total", "x", ["k"], registry=registry)
