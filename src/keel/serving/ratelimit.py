"""Per-client request limits: a sliding window counter, in process or in Redis.

The sliding-window counter (two fixed-window counters, weighted) costs O(1) per request
whatever the limit; the exact moving window keeps one timestamp per request, which at
1,000/minute and more makes each check slower the busier the client. With a Redis URL
the counters live in Redis through the ``limits`` library, so that every gateway replica
shares them; without one they live in this process
(:class:`keel.serving._window.SlidingWindowCounter`, same arithmetic; its docstring says
why not ``limits``' memory storage).
"""

from __future__ import annotations

import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from keel.errors import InvalidInput, RateLimited
from keel.serving._window import SlidingWindowCounter, ceil_seconds

__all__ = ["RateLimiter", "client_key"]

#: Longest customer header value used in a key (a longer one is cut, not refused).
_MAX_CUSTOMER = 200


def client_key(principal: Any, customer: bytes | None, peer: Any) -> str:
    """Whom the rate limit counts: the one key function of every answer path (#15.12).

    ``principal`` is the authenticated user (a name, or an object with ``.name``; None
    with auth off), ``customer`` the value of the customer header
    (``KEEL_SERVING_RATE_LIMIT_KEY_HEADER``, None when absent or ignored) and ``peer``
    the ASGI ``client`` (address, port). The key is

    - ``user:<principal>`` — a token's budget follows its user, from any address;
    - ``user:<principal>|customer:<value>`` — a service calling for many customers gives
      each of them its own budget, which no other principal can use up;
    - ``customer:<value>`` — auth off, header present (the caller is trusted to name it);
    - ``ip:<address>`` — neither.
    """
    name = getattr(principal, "name", principal) if principal else None
    value = customer.decode("latin-1")[:_MAX_CUSTOMER] if customer else None
    if name:
        return f"user:{name}" if value is None else f"user:{name}|customer:{value}"
    if value is not None:
        return f"customer:{value}"
    return f"ip:{peer[0] if peer else 'unknown'}"


class RateLimiter:
    """``await limiter.check(key)`` raises :class:`RateLimited` with ``retry_after_s``.

    ``spec`` uses the ``limits`` notation, e.g. ``"1000/minute"``; an empty spec disables
    limiting. ``key_header`` names the customer header that :func:`client_key` reads
    (empty: none); :attr:`key_header` holds it as the lower-case bytes ASGI delivers.
    """

    def __init__(
        self, spec: str, *, redis_url: str | None = None, key_header: str = "X-Keel-Client"
    ) -> None:
        self.spec = spec.strip()
        # b"" never equals a header name, so an empty setting ignores every header
        self.key_header = key_header.strip().lower().encode("latin-1")
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
        self._shared: SlidingWindowCounterRateLimiter | None = None
        self._local: SlidingWindowCounter | None = None
        if self.item is None:
            return
        if redis_url:
            import redis.asyncio as aioredis

            self._pool = aioredis.ConnectionPool.from_url(redis_url)
            storage = RedisStorage(
                redis_url,
                implementation="redispy",
                key_prefix="keel-rl",
                connection_pool=self._pool,
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)
        else:
            self._local = SlidingWindowCounter(self.item.amount, self.item.get_expiry())

    @property
    def is_local(self) -> bool:
        """Whether a check needs no I/O (no limit, or counters in this process)."""
        return self._shared is None

    async def check(self, key: str) -> None:
        """Count one request of ``key``; raise RateLimited when it is over the limit."""
        if self._shared is None:
            self.check_local(key)
            return
        assert self.item is not None  # a shared limiter always has its item
        if await self._shared.hit(self.item, key):
            return
        stats = await self._shared.get_window_stats(self.item, key)
        raise self._exceeded(ceil_seconds(stats.reset_time - time.time()))

    def check_local(self, key: str) -> None:
        """:meth:`check` without the coroutine, for a limiter that :attr:`is_local`."""
        local = self._local
        if local is None:
            if self._shared is not None:
                raise RuntimeError("a Redis-backed rate limiter is checked with check()")
            return
        if not local.hit(key):
            raise self._exceeded(ceil_seconds(local.retry_after_s(key)))

    def _exceeded(self, retry: int) -> RateLimited:
        return RateLimited(
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
        if self._local is not None:
            self._local.reset()
        elif self._shared is not None:
            await self._shared.storage.reset()
