"""Prometheus counters and histograms for the hottest paths, updated without a lock.

``prometheus_client`` takes a lock for every update: a counter increment costs about
1 µs here and a histogram observation two, and a cached prediction updates five series
(HTTP and per-model requests, latencies, cache hits) in about 50 µs. These series keep
one cell per thread instead: an update touches only its own thread's cell, so it needs
no lock and cannot lose a concurrent update; a scrape sums the cells. They register in
the same registry and expose the same samples as ``prometheus_client.Counter`` and
``Histogram`` (``_total``, ``_created``, ``_bucket``/``_count``/``_sum``), so dashboards
and alerts cannot tell them apart.

Only the series of the request paths use them; every other metric of keel is a plain
``prometheus_client`` metric.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from threading import get_ident
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["HotCounter", "HotHistogram"]

Child = TypeVar("Child", "_CounterCells", "_HistogramCells")


class _Family(Collector, Generic[Child]):
    """A labelled family of per-thread series, registered as a collector."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Child] = {}
        self._lock = threading.Lock()  # creating children only, never updating them
        if registry is not None:
            registry.register(self)

    def labels(self, *values: object) -> Child:
        """The series for these label values (created on first use), like ``prometheus_client``."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values!r}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = self._children[key] = self._new_child()
        return child

    def _new_child(self) -> Child:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            child.add_to(family, list(values))
        yield family


class _CounterCells:
    __slots__ = ("_cells", "created")

    def __init__(self) -> None:
        self._cells: dict[int, float] = {}
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError("counters only go up")
        cells, me = self._cells, get_ident()
        cells[me] = cells.get(me, 0.0) + amount

    def value(self) -> float:
        """The total over every thread."""
        # list() copies in C, without running Python code: no thread can resize the
        # dict half-way through (each thread writes only its own key anyway).
        return math.fsum(list(self._cells.values()))

    def add_to(self, family: Metric, labels: list[str]) -> None:
        assert isinstance(family, CounterMetricFamily)
        family.add_metric(labels, self.value(), created=self.created)


class HotCounter(_Family[_CounterCells]):
    """A labelled counter (name ending in ``_total``, as ``prometheus_client`` wants it)."""

    def _new_child(self) -> _CounterCells:
        return _CounterCells()

    def _family(self) -> Metric:
        name = self.name.removesuffix("_total")
        return CounterMetricFamily(name, self.documentation, labels=self.labelnames)


class _HistogramCells:
    __slots__ = ("_bounds", "_cells", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds  # ascending, the last one +Inf
        self._cells: dict[int, list[float]] = {}  # per thread: count per bucket, then sum
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Record one observation."""
        cells = self._cells.get(get_ident())
        if cells is None:
            cells = self._cells[get_ident()] = [0.0] * (len(self._bounds) + 1)
        cells[bisect_left(self._bounds, value)] += 1  # the bucket whose bound is >= value
        cells[-1] += value

    def totals(self) -> list[float]:
        """Per-bucket counts (not cumulative), then the sum, over every thread."""
        rows = list(self._cells.values())
        return [math.fsum(column) for column in zip(*rows, strict=True)] if rows else []

    def add_to(self, family: Metric, labels: list[str]) -> None:
        assert isinstance(family, HistogramMetricFamily)
        totals = self.totals() or [0.0] * (len(self._bounds) + 1)
        buckets, running = [], 0.0
        for bound, count in zip(self._bounds, totals, strict=False):
            running += count
            buckets.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
        family.add_metric(labels, buckets, totals[-1])
        # HistogramMetricFamily takes no creation time; prometheus_client's Histogram has one.
        names = dict(zip(family._labelnames, labels, strict=True))
        family.samples.append(Sample(f"{family.name}_created", names, self.created))


class HotHistogram(_Family[_HistogramCells]):
    """A labelled histogram with fixed bucket bounds (``+Inf`` added)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> _HistogramCells:
        return _HistogramCells(self.bounds)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
