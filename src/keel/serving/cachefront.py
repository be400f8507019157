"""The gateway's view of the prediction cache: backend choice, per-model TTL, outage guard."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from keel.config import Settings
from keel.errors import InvalidInput
from keel.serving.cache import CachedRow, MemoryCache, PredictionCache, RedisCache
from keel.serving.events import Invalidation

__all__ = ["GuardedCache", "open_cache"]

log = logging.getLogger("keel.serving")


class GuardedCache:
    """Wraps a store: a failing cache costs speed, never an answer; TTLs come per model."""

    def __init__(self, store: PredictionCache, settings: Settings) -> None:
        self.store = store
        self.default_ttl_s = settings.serving_cache_ttl_s
        self.ttl_by_model = dict(settings.serving_cache_ttl_by_model)

    @property
    def backend(self) -> str:
        """The store's class name (``MemoryCache`` or ``RedisCache``)."""
        return type(self.store).__name__

    @property
    def is_local(self) -> bool:
        """Whether entries live in this process (then :meth:`peek` can answer)."""
        return isinstance(self.store, MemoryCache)

    def peek(
        self, model: str, version: int, keys: Sequence[bytes], probabilities: bool
    ) -> list[CachedRow] | None:
        """Every row from the in-process store, or None on any miss (nothing counted)."""
        if not isinstance(self.store, MemoryCache):
            return None
        return self.store.peek_all(model, version, keys, probabilities)

    def lookup_local(self, model: str, version: int, keys: Sequence[bytes]) -> list[Any]:
        """Rows of the in-process store, None per miss (call only when :attr:`is_local`)."""
        assert isinstance(self.store, MemoryCache)
        return self.store.lookup(model, version, keys)

    def ttl_s(self, model: str) -> float:
        """The TTL of ``model``'s entries."""
        return self.ttl_by_model.get(model, self.default_ttl_s)

    async def get(self, model: str, version: int, keys: Sequence[bytes]) -> list[Any]:
        """Cached rows, or all misses when the store fails."""
        try:
            return await self.store.get_many(model, version, keys)
        except Exception as exc:  # an outage: answer from the model instead
            log.warning("prediction cache read failed: %r", exc)
            return [None] * len(keys)

    async def put(
        self,
        model: str,
        version: int,
        keys: Sequence[bytes],
        rows: Sequence[CachedRow],
        entities: Sequence[str | None] | None,
    ) -> None:
        """Store rows with the model's TTL; a failure is logged and ignored."""
        try:
            await self.store.put_many(model, version, keys, rows, self.ttl_s(model), entities)
        except Exception as exc:  # an outage: the next request computes again
            log.warning("prediction cache write failed: %r", exc)

    async def invalidate(self, event: Invalidation) -> int:
        """Drop what the event names in the store."""
        return await self.store.invalidate(event)

    def drop_local(self, event: Invalidation) -> int:
        """Apply another replica's event to in-process entries."""
        return self.store.drop_local(event)

    async def close(self) -> None:
        """Close the store."""
        await self.store.close()


def open_cache(settings: Settings) -> GuardedCache | None:
    """The configured cache: None when off, Redis when asked or (auto) when configured."""
    if not settings.serving_cache:
        return None
    backend = settings.serving_cache_backend
    if backend == "redis" and not settings.redis_url:
        raise InvalidInput(
            "KEEL_SERVING_CACHE_BACKEND=redis needs KEEL_REDIS_URL", field="serving_cache_backend"
        )
    store: PredictionCache
    if settings.redis_url and backend in ("redis", "auto"):
        store = RedisCache(settings.redis_url)
    else:
        store = MemoryCache(settings.serving_cache_max_entries)
    return GuardedCache(store, settings)
