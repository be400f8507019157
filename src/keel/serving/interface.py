"""The gateway's small public types: what a request names, what it returns, where logs go."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.serving._commit import CommitGroup
from keel.serving.records import PredictionRecord

__all__ = [
    "CachedAnswer",
    "PredictResult",
    "PredictionSink",
    "Target",
    "limit_native_threads",
]

_THREAD_LIMITS = threading.local()


class PredictionSink(Protocol):
    """Where served predictions go (``keel.serving.predlog.PredictionLog``): never blocks.

    A sink that also has ``append_served(ServedRequest)`` gets each request whole
    (one call per request); any other gets one :class:`PredictionRecord` per row.
    """

    def append(self, record: PredictionRecord) -> None:
        """Queue one record."""
        ...

    def close(self) -> None:
        """Flush and stop."""
        ...


@dataclass(frozen=True, slots=True)
class Target:
    """What a request names: ``name`` and either a ``version`` or an ``alias``; with
    ``deployment`` true, ``name`` is a deployment whose routes choose the version, or
    ``arm`` names the arm that answers (interleaving scores with both arms)."""

    name: str
    version: int | None = None
    alias: str | None = None
    deployment: bool = False
    arm: str | None = None


@dataclass(slots=True)
class PredictResult:
    """The response body and how long each stage took (for ``Server-Timing``).

    ``commit``: with group commit, the prediction-log write the answer waits for.
    """

    body: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)
    commit: CommitGroup | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A repeated cache hit's answer, already serialised (``Gateway.answer_cached``)."""

    payload: bytes  # the JSON response body
    timing: str  # its ``Server-Timing`` header value


def limit_native_threads(threads: int) -> None:
    """Cap OpenMP threads in this predict thread (LightGBM, XGBoost; 0 = leave as is).

    One-row calls gain nothing from several OpenMP threads and lose much when the cores
    are busy; concurrency comes from the predict threads and from micro-batching.
    """
    if threads > 0:
        from threadpoolctl import threadpool_limits

        _THREAD_LIMITS.limits = threadpool_limits(limits=threads, user_api="openmp")
