"""Prometheus metrics of the serving gateway (exported on ``/metrics`` with the API's)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from keel._metrics import HotCounter, HotHistogram

__all__ = [
    "BATCH_ROWS",
    "CACHE",
    "ERRORS",
    "FALLBACKS",
    "LATENCY",
    "MODEL_LOAD",
    "POOL_BYTES",
    "REQUESTS",
    "cache_series",
    "series",
]

# The three series every prediction updates are lock-free (keel._metrics); same samples.
REQUESTS = HotCounter(
    "keel_serving_requests_total", "Predict requests answered", ["model", "version"]
)
ERRORS = Counter(
    "keel_serving_errors_total",
    "Predict requests that failed, by kind (model_error, timeout, unavailable, load_error)",
    ["model", "version", "kind"],
)
LATENCY = HotHistogram(
    "keel_serving_latency_seconds",
    "Predict latency inside the gateway (validation, cache, model)",
    ["model", "version"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CACHE = HotCounter(
    "keel_serving_cache_total", "Prediction-cache lookups per row", ["model", "result"]
)
FALLBACKS = Counter(
    "keel_serving_fallbacks_total", "Requests answered by a fallback", ["model", "version"]
)
BATCH_ROWS = Histogram(
    "keel_serving_batch_rows",
    "Rows per model call (micro-batch size)",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024),
)
MODEL_LOAD = Gauge(
    "keel_serving_model_load_seconds", "Time to load a model version", ["model", "version"]
)
POOL_BYTES = Gauge("keel_serving_pool_bytes", "Size of the loaded models (on-disk bytes)")

_SERIES: dict[tuple[str, int], tuple[Any, Any]] = {}
_CACHE_SERIES: dict[str, tuple[Any, Any]] = {}


def series(model: str, version: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one version (children kept: ``labels()``
    costs a lock and a lookup per call on the hot path)."""
    found = _SERIES.get((model, version))
    if found is None:
        labels = (model, str(version))
        found = _SERIES[(model, version)] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
    return found


def cache_series(model: str) -> tuple[Any, Any]:
    """The cache hit and miss counters of one model (children kept, as in :func:`series`)."""
    found = _CACHE_SERIES.get(model)
    if found is None:
        found = _CACHE_SERIES[model] = (CACHE.labels(model, "hit"), CACHE.labels(model, "miss"))
    return found
