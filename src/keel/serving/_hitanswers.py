"""In-process cache hits of the gateway: answers given without awaiting anything.

:class:`HitAnswers` is a mixin of :class:`~keel.serving.gateway.Gateway`. When a request's
version, loaded model, parsed body and every row are in the in-process cache,
:meth:`~HitAnswers._from_memory` answers it with no timeout scope, no task switch and no
lock wait, and renders the answer (:mod:`keel.serving.hits`); :meth:`~HitAnswers.answer_cached`
then serves the next identical body from that rendering while the cache holds the same
rows. Both pick a deployment's arm first: its version is in every cache key.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError
from keel.serving._bookkeeping import Bookkeeping, Via, _Outcome
from keel.serving.hits import TIMING, MemoKey, render
from keel.serving.interface import CachedAnswer, PredictResult, Target
from keel.serving.validation import MEMO_MAX_BODY

if TYPE_CHECKING:
    from keel.serving.aliases import AliasTable
    from keel.serving.cachefront import GuardedCache
    from keel.serving.deployroutes import DeploymentRoutes
    from keel.serving.pool import ModelPool, PoolEntry
    from keel.serving.ratelimit import RateLimiter
    from keel.serving.shadow import ShadowQueue

__all__ = ["HitAnswers"]


class HitAnswers(Bookkeeping):
    """Answers of requests whose every row is in the in-process cache (a mixin)."""

    # Set by Gateway.__init__.
    cache: GuardedCache | None
    aliases: AliasTable
    pool: ModelPool
    limiter: RateLimiter
    routes: DeploymentRoutes
    shadows: ShadowQueue

    def _from_memory(
        self, target: Target, body: bytes, started: float, via: Via = None, decoded: Any = None
    ) -> PredictResult | None:
        """The answer when every row is in the in-process cache, without awaiting anything.

        A cache hit's version, model entry, parsed body and rows are all in memory: this
        path answers them with no timeout scope, no task switch and no lock wait (the
        cheapest request keel serves; see docs/benchmarks.md). Anything else returns None
        and takes the full path, which validates and counts again. The answer is also
        rendered for :meth:`answer_cached`, which serves the next identical request.
        ``decoded`` is the body decoded from JSON when the deployment route decoded it.
        """
        located = self._locate(target)
        if located is None:
            return None
        name, version, entry = located
        mark = time.perf_counter()
        try:
            parsed = entry.spec.parse(body, decoded)
        except KeelError:
            return None  # the full path raises it, in its order of checks
        if parsed.probabilities and not entry.has_probabilities:
            return None
        checked = time.perf_counter()
        rows = self.cache.peek(name, version, parsed.keys, parsed.probabilities)  # type: ignore[union-attr]
        if rows is None:
            return None
        if len(body) <= MEMO_MAX_BODY:
            memo: MemoKey = body if via is None else (via[1].memo_prefix, body)
            rendered = entry.hits.get(memo)
            if rendered is None or not rendered.current(rows):
                arm = None if via is None else via[1].name
                deployment = None if via is None else via[0].name
                entry.hits.remember(memo, render(name, version, parsed, rows, deployment, arm))
        self._count_hits(name, len(rows))
        timings = {
            "validation": (checked - mark) * 1000,
            "cache": (time.perf_counter() - checked) * 1000,
            "model": 0.0,
        }
        outcome = _Outcome(
            predictions=[row[0] for row in rows],
            probabilities=[row[1] for row in rows],
            version=version,
            fallback=False,
            hits=[True] * len(rows),
        )
        return self._respond(entry, parsed, outcome, started, timings, via)

    def answer_cached(self, target: Target, body: bytes, *, client_key: str) -> CachedAnswer | None:
        """A repeated cache hit's response, serialised, or None: then call :meth:`predict`.

        Serves a body :meth:`predict` has already answered from the in-process cache
        (its rendered answer, see :mod:`keel.serving.hits`) while the cache still holds
        the very rows it was rendered from; the rate limit, counters, latency series and
        prediction log are those of :meth:`predict`. It returns None before counting
        anything, so a caller that gets None calls :meth:`predict` with the same body.
        Raises :class:`~keel.errors.RateLimited` as :meth:`predict` does.
        """
        started = time.perf_counter()
        if not self.limiter.is_local or self._durable:  # group commit: predict() waits
            return None
        if len(body) > MEMO_MAX_BODY:  # never rendered: no routing key read for nothing
            return None
        via: Via = None
        if target.deployment:  # the arm first, as in predict(): its version keys the cache
            via = self.routes.pick_now(target.name, body)
            if via is None:
                return None
            target = Target(via[0].model, version=via[1].version)
        located = self._locate(target)
        if located is None:
            return None
        name, version, entry = located
        if name in self.exploring:  # explored rows and flags: built per answer (_respond)
            return None
        # (prefix, body): a tuple hashes the two cached hashes, a concatenation copies
        # and hashes the whole body again
        rendered = entry.hits.get(body if via is None else (via[1].memo_prefix, body))
        if rendered is None:
            return None
        parsed = rendered.parsed
        checked = time.perf_counter()
        rows = self.cache.lookup_local(name, version, parsed.keys)  # type: ignore[union-attr]
        if not rendered.current(rows):  # a miss, expired or changed row: not the same rows
            return None
        found = time.perf_counter()
        self.limiter.check_local(client_key)
        request_id = b"%032x" % random.getrandbits(128)  # uuid4 reads urandom: 10x slower
        payload = rendered.payload(request_id)
        done = time.perf_counter()
        elapsed_ms = (done - started) * 1000
        self._count_hits(name, len(rows))
        self._served(
            name,
            version,
            parsed,
            request_id.decode("ascii"),
            elapsed_ms,
            rendered.predictions,
            rendered.probabilities,
            rendered.hits,
            False,
            via,
        )
        if via is not None and via[0].shadows:
            self.shadows.offer(via[0], request_id.decode("ascii"), body)
        timing = TIMING % (
            (checked - started) * 1000,
            (found - checked) * 1000,
            0.0,
            (done - found) * 1000,
        )
        return CachedAnswer(payload, timing)

    def _locate(self, target: Target) -> tuple[str, int, PoolEntry] | None:
        """Name, version and loaded entry of a target served from the in-process cache,
        when all three are known without awaiting anything; else None."""
        cache = self.cache
        if cache is None or not cache.is_local:
            return None
        name = target.name
        version = target.version
        if version is None:
            version = self.aliases.serving_now(name, target.alias or "")
            if version is None:
                return None
        entry = self.pool.loaded(name, version)
        if entry is None or entry.binding is not None:
            # A bound model's answer depends on online values, not on the body alone (and
            # an unresolved one may be bound): only the full path answers it.
            return None
        return name, version, entry
