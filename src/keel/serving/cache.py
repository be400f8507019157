"""The prediction cache: one entry per (model, version, canonical input row).

The version is part of every key, so a new version or an alias move can never be answered
from another version's entries. Two stores:

- :class:`MemoryCache`: a bounded LRU in this process (``KEEL_SERVING_CACHE_MAX_ENTRIES``),
  with an index from entity to keys for event-based invalidation;
- :class:`RedisCache`: shared by every replica (``KEEL_REDIS_URL``). Keys are
  ``keel:pc:<model>:<version>:<blake2b of the row>`` with the TTL as Redis expiry, and
  ``keel:pe:<model>:<entity>`` sets list the keys made for an entity. Model names and
  entities are URL-quoted in keys, so they hold no ``:`` or glob characters.

A value is the row's prediction and, when computed, its class probabilities.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

from keel.serving import _json
from keel.serving.events import Invalidation

__all__ = ["CachedRow", "MemoryCache", "PredictionCache", "RedisCache", "delete_shared"]

CachedRow = tuple[Any, list[float] | None]
_PREFIX = "keel:pc:"
_ENTITY_PREFIX = "keel:pe:"


class PredictionCache(Protocol):
    """What the gateway needs from a cache store."""

    async def get_many(self, model: str, version: int, keys: Sequence[bytes]) -> list[Any]:
        """The cached rows for ``keys`` (None where absent or expired)."""
        ...

    async def put_many(
        self,
        model: str,
        version: int,
        keys: Sequence[bytes],
        rows: Sequence[CachedRow],
        ttl_s: float,
        entities: Sequence[str | None] | None,
    ) -> None:
        """Store rows for ``ttl_s`` seconds, indexed by entity when given."""
        ...

    async def invalidate(self, event: Invalidation) -> int:
        """Drop the entries the event names; returns how many."""
        ...

    def drop_local(self, event: Invalidation) -> int:
        """Apply an event received from another replica to state held in this process."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """A thread-safe LRU of at most ``max_entries`` rows with per-entry expiry."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, int, bytes], tuple[float, CachedRow, Any]] = (
            OrderedDict()
        )
        self._by_entity: dict[str, set[tuple[str, int, bytes]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def get_many(self, model: str, version: int, keys: Sequence[bytes]) -> list[Any]:
        """Cached rows (None for misses); expired entries are removed on the way."""
        return self.lookup(model, version, keys)

    def lookup(self, model: str, version: int, keys: Sequence[bytes]) -> list[Any]:
        """:meth:`get_many` without the coroutine (the store does no I/O)."""
        now = time.monotonic()
        found: list[Any] = []
        with self._lock:
            for key in keys:
                full = (model, version, key)
                entry = self._entries.get(full)
                if entry is None:
                    found.append(None)
                elif entry[0] <= now:
                    self._remove(full)
                    found.append(None)
                else:
                    self._entries.move_to_end(full)
                    found.append(entry[1])
        return found

    def peek_all(
        self, model: str, version: int, keys: Sequence[bytes], probabilities: bool
    ) -> list[CachedRow] | None:
        """Every row (with probabilities when asked), or None if any is missing or expired."""
        found = self.lookup(model, version, keys)
        if any(row is None or (probabilities and row[1] is None) for row in found):
            return None
        return found

    async def put_many(
        self,
        model: str,
        version: int,
        keys: Sequence[bytes],
        rows: Sequence[CachedRow],
        ttl_s: float,
        entities: Sequence[str | None] | None,
    ) -> None:
        """Store rows, evicting the least recently used beyond ``max_entries``."""
        expires = time.monotonic() + ttl_s
        with self._lock:
            for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
                full = (model, version, key)
                entity = entities[i] if entities else None
                if full in self._entries:
                    self._remove(full)
                self._entries[full] = (expires, row, entity)
                if entity is not None:
                    self._by_entity.setdefault(entity, set()).add(full)
            while len(self._entries) > self.max_entries:
                self._remove(next(iter(self._entries)))

    def _remove(self, full: tuple[str, int, bytes]) -> None:
        entry = self._entries.pop(full, None)
        if entry is not None and entry[2] is not None:
            keys = self._by_entity.get(entry[2])
            if keys is not None:
                keys.discard(full)
                if not keys:
                    del self._by_entity[entry[2]]

    async def invalidate(self, event: Invalidation) -> int:
        """Drop matching entries."""
        return self.drop_local(event)

    def drop_local(self, event: Invalidation) -> int:
        """Drop the entries an event names; alias events drop nothing (keys hold versions)."""
        with self._lock:
            if event.kind == "all":
                count = len(self._entries)
                self._entries.clear()
                self._by_entity.clear()
                return count
            if event.kind == "entity":
                assert event.entity is not None
                doomed = [
                    k
                    for k in self._by_entity.get(event.entity, ())
                    if event.model is None or k[0] == event.model
                ]
            elif event.kind in ("model", "version"):
                doomed = [k for k in self._entries if event.matches(k[0], k[1])]
            else:
                return 0
            for key in doomed:
                self._remove(key)
            return len(doomed)

    async def close(self) -> None:
        """Nothing to release."""


def _q(text: str) -> str:
    return quote(text, safe="")


def redis_key(model: str, version: int, key: bytes) -> str:
    """The Redis key of one cached row."""
    return f"{_PREFIX}{_q(model)}:{version}:{hashlib.blake2b(key, digest_size=16).hexdigest()}"


def _entity_key(model: str, entity: str) -> str:
    return f"{_ENTITY_PREFIX}{_q(model)}:{_q(entity)}"


def _patterns(event: Invalidation) -> list[str]:
    if event.kind == "all":
        return [f"{_PREFIX}*", f"{_ENTITY_PREFIX}*"]
    if event.kind == "model" and event.model:
        return [f"{_PREFIX}{_q(event.model)}:*", f"{_ENTITY_PREFIX}{_q(event.model)}:*"]
    if event.kind == "version" and event.model:
        return [f"{_PREFIX}{_q(event.model)}:{event.version}:*"]
    return []


def delete_shared(client: Any, event: Invalidation) -> int:
    """Delete the Redis entries an event names with a synchronous ``redis.Redis``."""
    if event.kind == "entity":
        assert event.entity is not None
        if event.model is not None:
            indexes = [_entity_key(event.model, event.entity)]
        else:
            indexes = list(client.scan_iter(match=f"{_ENTITY_PREFIX}*:{_q(event.entity)}"))
        keys = [k for index in indexes for k in client.smembers(index)]
        dropped = int(client.delete(*keys)) if keys else 0
        if indexes:
            client.delete(*indexes)
        return dropped
    dropped = 0
    for pattern in _patterns(event):
        batch = list(client.scan_iter(match=pattern, count=1000))
        if batch:
            count = int(client.delete(*batch))
            dropped += count if pattern.startswith(_PREFIX) else 0
    return dropped


class RedisCache:
    """Prediction cache in Redis, shared by every replica (redis-py's asyncio client)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.client: Any = aioredis.Redis.from_url(url)
        self.url = url

    async def get_many(self, model: str, version: int, keys: Sequence[bytes]) -> list[Any]:
        """MGET of the rows' keys."""
        raw = await self.client.mget([redis_key(model, version, k) for k in keys])
        return [None if item is None else tuple(_json.loads(item)) for item in raw]

    async def put_many(
        self,
        model: str,
        version: int,
        keys: Sequence[bytes],
        rows: Sequence[CachedRow],
        ttl_s: float,
        entities: Sequence[str | None] | None,
    ) -> None:
        """SET with expiry, and SADD to the entity indexes, in one pipeline."""
        ttl_ms = max(1, int(ttl_s * 1000))
        async with self.client.pipeline(transaction=False) as pipe:
            for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
                name = redis_key(model, version, key)
                pipe.set(name, _json.dumps(list(row)), px=ttl_ms)
                entity = entities[i] if entities else None
                if entity is not None:
                    index = _entity_key(model, entity)
                    pipe.sadd(index, name)
                    pipe.pexpire(index, ttl_ms)
            await pipe.execute()

    async def invalidate(self, event: Invalidation) -> int:
        """Delete matching entries in Redis (the shared store)."""
        import redis as redis_lib

        def run() -> int:
            sync = redis_lib.Redis.from_url(self.url)
            try:
                return delete_shared(sync, event)
            finally:
                sync.close()

        return await asyncio.to_thread(run)

    def drop_local(self, event: Invalidation) -> int:
        """Entries live in Redis, which the publisher already cleaned: nothing to do here."""
        return 0

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
