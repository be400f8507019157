"""Bounds on token verification: failure throttles, a failure cache, a bounded argon2 pool.

Each argon2 check costs tens of milliseconds and 19 MiB. Unbounded, 32 concurrent
requests with a known token id and wrong secrets took legitimate calls from ~6 ms to
~1.7 s and the server to ~940 MB (#15.3). Three bounds, applied before any hashing:

- failures are counted per token id and per client address with the ``limits``
  library (in process; MemoryStorage's expiry timer only runs while failures arrive, so
  the reason :mod:`keel.serving._window` bypasses it does not apply here); over either
  budget a request is refused with 429 and ``Retry-After`` without hashing;
- a token that just failed (by sha256 of the whole token) fails again from a cache;
- argon2 checks run on a pool of ``max_parallel`` threads of their own, with at most as
  many more waiting; a request that cannot get a place within ``slot_wait_s`` is answered
  503 instead of queueing threads behind the hash. Own threads, not the request threads:
  glibc keeps a freed 19 MiB argon2 buffer in the arena of the thread that hashed, so
  hashing on any of the 40 request threads grew the process by hundreds of MB.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from keel.errors import InvalidInput, RateLimited, Unauthorized, Unavailable

__all__ = ["VerificationGuard"]

T = TypeVar("T")


def _item(spec: str, field: str) -> RateLimitItem:
    try:
        return parse(spec)
    except ValueError:
        raise InvalidInput(
            f"{spec!r} is not a rate: use e.g. '20/minute'", field=field, value=spec
        ) from None


class VerificationGuard:
    """Admits token checks: ``guard.admit(key, token_id, client)`` before the lookup,
    ``guard.run(verify, ...)`` for the hash, ``guard.failed(...)`` after a miss.
    """

    def __init__(
        self,
        *,
        per_token: str = "20/minute",
        per_client: str = "60/minute",
        max_parallel: int = 2,
        slot_wait_s: float = 0.25,
        failure_ttl_s: float = 60.0,
        max_failures_cached: int = 10_000,
    ) -> None:
        self.per_token = _item(per_token, "auth_failure_limit_per_token")
        self.per_client = _item(per_client, "auth_failure_limit_per_client")
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="keel-argon2")
        self._places = threading.BoundedSemaphore(2 * max_parallel)  # running + waiting
        self.slot_wait_s = slot_wait_s
        self.failure_ttl_s = failure_ttl_s
        self.max_failures_cached = max_failures_cached
        self._failures: OrderedDict[bytes, float] = OrderedDict()  # key -> monotonic expiry
        # token id -> key of the token last verified with it: its holder is not locked out
        # by a flood against the id (the budgets would otherwise refuse the real secret too)
        self._good: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, key: bytes, token_id: str, client: str | None) -> None:
        """Raise before any lookup or hashing when this token or client is over budget.

        ``key`` is the token's cache key (sha256 of the whole token): a token that failed
        within ``failure_ttl_s`` fails again here, counted as another failure.
        """
        if self._recently_failed(key):
            self.failed(key, token_id, client)
            raise Unauthorized("invalid API token")
        if self._good.get(token_id) == key:
            return
        for item, scope, who in self._budgets(token_id, client):
            if not self._limiter.test(item, scope, who):
                reset_at, _ = self._limiter.get_window_stats(item, scope, who)
                wait = max(1, math.ceil(reset_at - time.time()))
                raise RateLimited(
                    f"too many failed token checks for this {scope}; retry in {wait} s",
                    retry_after_s=wait,
                )

    def failed(self, key: bytes, token_id: str | None, client: str | None) -> None:
        """Count a failed check against the token id (None: no such token, so no budget
        is kept for it) and the client; remember the token as failed."""
        with self._lock:
            self._failures[key] = time.monotonic() + self.failure_ttl_s
            self._failures.move_to_end(key)
            while len(self._failures) > self.max_failures_cached:
                self._failures.popitem(last=False)  # bounded: the oldest go first
        for item, scope, who in self._budgets(token_id, client):
            self._limiter.hit(item, scope, who)

    def succeeded(self, key: bytes, token_id: str) -> None:
        """Remember the token that verified for ``token_id`` (bounded, oldest dropped)."""
        with self._lock:
            self._good[token_id] = key
            self._good.move_to_end(token_id)
            while len(self._good) > self.max_failures_cached:
                self._good.popitem(last=False)

    def run(self, check: Callable[..., T], *args: object) -> T:
        """``check(*args)`` on the verification pool; 503 when no place frees up in time."""
        if not self._places.acquire(timeout=self.slot_wait_s):
            raise Unavailable("too many token checks in progress; retry shortly", retry_after_s=1)
        try:
            return self._pool.submit(check, *args).result()
        finally:
            self._places.release()

    def close(self) -> None:
        """Stop the verification threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _budgets(
        self, token_id: str | None, client: str | None
    ) -> list[tuple[RateLimitItem, str, str]]:
        budgets = []
        if token_id is not None:
            budgets.append((self.per_token, "token", token_id))
        if client is not None:
            budgets.append((self.per_client, "client", client))
        return budgets

    def _recently_failed(self, key: bytes) -> bool:
        expiry = self._failures.get(key)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            with self._lock:
                self._failures.pop(key, None)
            return False
        return True
