"""Circuit breakers per model version and the fallbacks used while one is open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from keel.config import Settings
from keel.errors import Unavailable
from keel.registry.service import RegistryService
from keel.serving.batcher import BatchResult
from keel.serving.breaker import CircuitBreaker
from keel.serving.fallback import Fallback, parse_fallbacks, previous_version
from keel.serving.metrics import ERRORS
from keel.serving.pool import ModelPool, PoolEntry
from keel.serving.validation import ParsedInput

__all__ = ["Protection"]

Call = Callable[[PoolEntry, list[tuple[Any, ...]], bool, Sequence[str]], Awaitable[BatchResult]]


class Protection:
    """One :class:`CircuitBreaker` per (model, version), built from the settings."""

    def __init__(self, settings: Settings, registry: RegistryService, pool: ModelPool) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool
        self.fallbacks: dict[str, Fallback] = parse_fallbacks(settings.serving_fallbacks)
        self.breakers: dict[tuple[str, int], CircuitBreaker] = {}
        self._previous: dict[tuple[str, int], int | None] = {}

    def breaker(self, name: str, version: int) -> CircuitBreaker:
        """The breaker of one model version (created closed on first use)."""
        breaker = self.breakers.get((name, version))
        if breaker is None:
            s = self.settings
            breaker = CircuitBreaker(
                error_rate=s.serving_breaker_error_rate,
                window_s=s.serving_breaker_window_s,
                min_requests=s.serving_breaker_min_requests,
                reset_s=s.serving_breaker_reset_s,
            )
            self.breakers[(name, version)] = breaker
        return breaker

    async def fallback(
        self,
        entry: PoolEntry,
        body: bytes,
        misses: list[int],
        rows: list[tuple[Any, ...]],
        probabilities: bool,
        call: Call,
        *,
        reparse: Callable[[PoolEntry], Awaitable[ParsedInput]] | None = None,
    ) -> tuple[list[Any], list[Any] | None, int]:
        """Answer ``rows`` while ``entry``'s breaker is open: predictions and the version used.

        Raises Unavailable (503, with ``retry_after_s``) when no fallback is configured or
        there is no earlier version. ``reparse(older)`` turns the request into the older
        version's rows when their signatures differ (default: parse ``body`` again).
        """
        name, version = entry.name, entry.version
        retry = self.breaker(name, version).retry_after_s()
        fallback = self.fallbacks.get(name)
        if fallback is None:
            ERRORS.labels(name, str(version), "unavailable").inc()
            raise Unavailable(
                f"circuit breaker of {name}/{version} is open after too many errors "
                "and no fallback is configured",
                field="model",
                retry_after_s=retry,
            )
        if not fallback.previous:
            return [fallback.value] * len(rows), None, version
        previous = await previous_version(self.registry, name, version, self._previous)
        if previous is None:
            raise Unavailable(
                f"circuit breaker of {name}/{version} is open and there is no earlier version",
                field="model",
                retry_after_s=retry,
            )
        older = await self.pool.get(name, previous)
        columns = older.spec.columns
        if columns is None or columns != entry.spec.columns:
            # another signature (or none: the rows' columns come from the body): parse again
            reparsed = await reparse(older) if reparse is not None else older.spec.parse(body)
            rows, columns = [reparsed.rows[i] for i in misses], reparsed.columns
        predictions, proba = await call(older, rows, probabilities, columns)
        return predictions, proba, previous

    def describe(self) -> dict[str, dict[str, Any]]:
        """``{"name/version": {"state", "calls_errors"}}`` for the status endpoint."""
        return {
            f"{n}/{v}": {"state": b.state.value, "calls_errors": list(b.counts())}
            for (n, v), b in self.breakers.items()
        }
