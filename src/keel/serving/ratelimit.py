"""Per-client request limits with the ``limits`` library (sliding window counter).

The sliding-window counter (two fixed-window counters, weighted) costs O(1) per request
whatever the limit; the exact moving window keeps one timestamp per request, which at
1,000/minute and more makes each check slower the busier the client. Counters live in
process memory, or in Redis when a URL is given so that every gateway
replica shares them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from keel.errors import InvalidInput, RateLimited

__all__ = ["RateLimiter"]


class RateLimiter:
    """``await limiter.check(key)`` raises :class:`RateLimited` with ``retry_after_s``.

    ``spec`` uses the ``limits`` notation, e.g. ``"1000/minute"``; an empty spec disables
    limiting.
    """

    def __init__(self, spec: str, *, redis_url: str | None = None) -> None:
        self.spec = spec.strip()
        self.item: RateLimitItem | None = None
        if self.spec:
            try:
                self.item = parse(self.spec)
            except ValueError as exc:
                raise InvalidInput(
                    f"rate limit {spec!r} is not valid: use e.g. '1000/minute'",
                    field="serving_rate_limit",
                ) from exc
        self._pool: Any = None
        storage: Storage
        if redis_url:
            import redis.asyncio as aioredis

            self._pool = aioredis.ConnectionPool.from_url(redis_url)
            storage = RedisStorage(
                redis_url,
                implementation="redispy",
                key_prefix="keel-rl",
                connection_pool=self._pool,
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    async def check(self, key: str) -> None:
        """Count one request of ``key``; raise RateLimited when it is over the limit."""
        if self.item is None:
            return
        if await self._limiter.hit(self.item, key):
            return
        stats = await self._limiter.get_window_stats(self.item, key)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"rate limit {self.spec} exceeded for this client; retry in {retry} s",
            field="client",
            retry_after_s=retry,
            limit=self.spec,
        )

    async def close(self) -> None:
        """Close the Redis connections (when counters live in Redis)."""
        if self._pool is not None:
            await self._pool.disconnect()

    async def reset(self) -> None:
        """Forget every counter (tests, operators)."""
        await self.storage.reset()
