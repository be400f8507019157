"""The gateway's small public types: what a request names, what it returns, where logs go."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.serving.records import PredictionRecord
from keel.serving.validation import ParsedInput

__all__ = [
    "PredictResult",
    "PredictionSink",
    "Target",
    "limit_native_threads",
    "prediction_records",
]

_THREAD_LIMITS = threading.local()


class PredictionSink(Protocol):
    """Where served predictions go (``keel.serving.predlog.PredictionLog``): never blocks."""

    def append(self, record: PredictionRecord) -> None:
        """Queue one record."""
        ...

    def close(self) -> None:
        """Flush and stop."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """What a request names: ``name`` and either a ``version`` or an ``alias``."""

    name: str
    version: int | None = None
    alias: str | None = None


@dataclass(slots=True)
class PredictResult:
    """The response body and how long each stage took (for ``Server-Timing``)."""

    body: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP threads in this predict thread (LightGBM, XGBoost; 0 = leave as is).

    One-row calls gain nothing from several OpenMP threads and lose much when the cores
    are busy; concurrency comes from the predict threads and from micro-batching.
    """
    if threads > 0:
        from threadpoolctl import threadpool_limits

        _THREAD_LIMITS.limits = threadpool_limits(limits=threads, user_api="openmp")


def prediction_records(
    request_id: str,
    model: str,
    version: int,
    predictions: list[Any],
    probabilities: list[Any] | None,
    hits: list[bool],
    fallback: bool,
    parsed: ParsedInput,
    latency_ms: float,
) -> Iterator[PredictionRecord]:
    """One :class:`PredictionRecord` per served row of a request."""
    at_ms = int(time.time() * 1000)
    entities = parsed.entity_keys
    for i, prediction in enumerate(predictions):
        yield PredictionRecord(
            request_id=request_id,
            at_ms=at_ms,
            model=model,
            version=version,
            features=parsed.features(i),
            output=prediction,
            latency_ms=latency_ms,
            cached=hits[i],
            fallback=fallback,
            entity_key=None if entities is None else entities[i],
            probabilities=None if probabilities is None else probabilities[i],
        )
