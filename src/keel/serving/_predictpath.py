"""The gateway's full request path: rate limit → resolve → pool → validate → cache →
breaker → batch → log, under the serving timeout.

:class:`PredictPath` is a mixin of :class:`~keel.serving.gateway.Gateway`.
:meth:`~PredictPath.predict` picks a deployment's arm, tries the in-process hit path
(:mod:`keel.serving._hitanswers`), and otherwise resolves the version, parses the body
(with online features when a feature service feeds the model), answers the rows the
cache misses through the model's breaker (or a fallback version) and the micro-batcher,
and waits for the prediction log when group commit is on.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any

from keel.errors import GatewayTimeout, InvalidInput, KeelError, ModelError, Unavailable
from keel.serving._bookkeeping import Via, _Outcome
from keel.serving._commit import CommitGroup
from keel.serving._hitanswers import HitAnswers
from keel.serving.batcher import BatchResult, Lane, MicroBatcher
from keel.serving.blame import Call, judged_call
from keel.serving.interface import PredictResult, Target
from keel.serving.metrics import BATCH_ROWS, ERRORS, cache_series
from keel.serving.validation import ParsedInput

if TYPE_CHECKING:
    from collections import Counter
    from collections.abc import Sequence
    from concurrent.futures import Executor, ThreadPoolExecutor

    from keel.config import Settings
    from keel.serving.bulkhead import Bulkhead
    from keel.serving.enrich import FeatureBinder
    from keel.serving.pool import PoolEntry
    from keel.serving.protection import Protection

__all__ = ["PredictPath"]


class PredictPath(HitAnswers):
    """:meth:`predict` and the full path behind it (a mixin)."""

    # Set by Gateway.__init__.
    settings: Settings
    executor: ThreadPoolExecutor
    protection: Protection
    binder: FeatureBinder | None
    batchers: dict[tuple[str, int, bool], MicroBatcher]
    arm_batchers: dict[str, MicroBatcher]
    lanes: dict[tuple[str, int, bool], Lane]
    bulkhead: Bulkhead
    cache_misses: Counter[str]

    async def predict(self, target: Target, body: bytes, *, client_key: str) -> PredictResult:
        """Answer one predict request; raises KeelError subclasses for every failure."""
        live = self.shadows.live  # shadow copies wait while live requests are in flight
        live.enter()
        try:
            return await self._serve(target, body, client_key)
        finally:
            live.leave()

    async def _serve(self, target: Target, body: bytes, client_key: str) -> PredictResult:
        started = time.perf_counter()
        await self.limiter.check(client_key)
        via: Via = None
        decoded: Any = None  # the body as JSON, when reading its routing key decoded it
        # an interleaving request scores with both arms itself: no shadow copy on top
        copies = target.arm is None
        if target.deployment:  # the arm first: its version is in every cache key
            picked = self.routes.pick_known(target.name, body)
            if picked is None:  # not served yet: read it
                picked = await self.routes.pick(target.name, body)
            route, arm, decoded = picked
            if target.arm is not None:  # named (interleaving), not drawn: R-DEP-18
                arm = route.served_arm(target.arm)
            via = (route, arm)
            target = Target(route.model, version=arm.version)
        answered = self._from_memory(target, body, started, via, decoded)
        if answered is not None:
            if via is not None and via[0].shadows and copies:
                self.shadows.offer(via[0], answered.body["request_id"], body)
            if answered.commit is not None:
                await self._committed(answered.commit)
            return answered
        held = False  # whether this request holds a place in the bulkhead's partition
        if via is not None:  # the model path: experimental arms in their partition (R-DEP-19)
            arm, held = self.bulkhead.admit(*via)
            if arm is not via[1]:  # the partition is full: the primary answers, before its cache
                via = (via[0], arm)
                target = Target(via[0].model, version=arm.version)
        timings: dict[str, float] = {}
        reached: list[int] = []
        try:
            async with asyncio.timeout(self.settings.serving_timeout_s):
                result = await self._predict(target, body, started, timings, reached, via, decoded)
        except TimeoutError:
            version = reached[0] if reached else None
            if version is not None:
                self.protection.breaker(target.name, version).record(False)
            ERRORS.labels(target.name, str(version), "timeout").inc()
            raise GatewayTimeout(
                f"prediction of {target.name} took longer than "
                f"{self.settings.serving_timeout_s:g} s",
                field="model",
                timeout_s=self.settings.serving_timeout_s,
            ) from None
        finally:
            if held:
                self.bulkhead.leave()
        if via is not None and via[0].shadows and copies:  # off the response path, not waited
            self.shadows.offer(via[0], result.body["request_id"], body)
        if result.commit is not None:  # waited for outside the model's timeout and breaker
            await self._committed(result.commit)
        return result

    async def _committed(self, commit: CommitGroup) -> None:
        """Return once the answer's rows are durable in the prediction log (group commit).

        Raises :class:`Unavailable` (503) when the log refused or failed to write them, or
        did not within ``KEEL_SERVING_TIMEOUT_S``: an answer is never given unlogged.
        """
        timeout_s = self.settings.serving_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                written = await commit.wait_async()
        except TimeoutError:
            written = False
        if not written:  # counted by keel_prediction_log_records_total (dropped or failed)
            raise Unavailable(
                "the prediction log could not record this answer, so it is not given "
                "(KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0); retry",
                field="prediction_log",
                retry_after_s=1,
            )

    async def _predict(
        self,
        target: Target,
        body: bytes,
        started: float,
        timings: dict[str, float],
        reached: list[int],
        via: Via = None,
        decoded: Any = None,
    ) -> PredictResult:
        name = target.name
        if target.version is not None:
            version = target.version
        elif target.alias is not None:
            version = await self.aliases.version(name, target.alias)
        else:
            raise InvalidInput("name a version or an alias", field="version")
        reached.append(version)
        try:
            entry = await self.pool.get(name, version)
        except Unavailable:
            ERRORS.labels(name, str(version), "load_error").inc()
            raise
        mark = time.perf_counter()
        parsed = await self._parse(entry, body, timings, decoded)
        if parsed.probabilities and not entry.has_probabilities:
            raise InvalidInput(
                f"model {name}/{version} does not output probabilities", field="probabilities"
            )
        timings["validation"] = (time.perf_counter() - mark) * 1000 - timings.get("features", 0.0)
        experimental = via is not None and via[1].confined
        group = None if via is None else via[0].name
        outcome = await self._answer(entry, parsed, body, timings, experimental, group)
        return self._respond(entry, parsed, outcome, started, timings, via)

    async def _parse(
        self, entry: PoolEntry, body: bytes, timings: dict[str, float], decoded: Any = None
    ) -> ParsedInput:
        """The request's rows: the body's, with online features merged in when a feature
        service feeds the model (the lookup's time goes to ``timings["features"]``);
        ``decoded`` is the body already decoded from JSON, if it was."""
        binder = self.binder
        if binder is not None:
            binding = await binder.binding(entry)
            if binding is not None:
                return await binder.parse(entry, binding, body, timings)
        return entry.spec.parse(body, decoded)

    async def _answer(
        self,
        entry: PoolEntry,
        parsed: ParsedInput,
        body: bytes,
        timings: dict[str, float],
        experimental: bool = False,
        group: str | None = None,
    ) -> _Outcome:
        """The predictions of ``parsed``: cached rows, the others from the model (through
        its breaker, or a fallback version); an ``experimental`` arm's model calls run in
        the bulkhead's partition; a deployment's arms (``group``) batch together."""
        name, version, n = entry.name, entry.version, len(parsed.rows)
        mark = time.perf_counter()
        cached: list[Any] = [None] * n
        if self.cache is not None:
            cached = await self.cache.get(name, version, parsed.keys)
        misses = [
            i for i, c in enumerate(cached) if c is None or (parsed.probabilities and c[1] is None)
        ]
        self.cache_hits[name] += n - len(misses)
        self.cache_misses[name] += len(misses)
        hit_counter, miss_counter = cache_series(name)
        if n - len(misses):
            hit_counter.inc(n - len(misses))
        if misses:
            miss_counter.inc(len(misses))
        timings["cache"] = (time.perf_counter() - mark) * 1000
        outcome = _Outcome(
            predictions=[c[0] if c is not None else None for c in cached],
            probabilities=[c[1] if c is not None else None for c in cached],
            version=version,
            fallback=False,
            hits=[c is not None for c in cached],
        )
        for i in misses:
            outcome.hits[i] = False
        if not misses:
            timings["model"] = 0.0
            return outcome
        rows = [parsed.rows[i] for i in misses]
        mark = time.perf_counter()
        breaker = self.protection.breaker(name, version)
        executor: Executor = self.bulkhead.executor if experimental else self.executor
        call: Call = self._call
        if group is not None:
            call = functools.partial(self._call, experimental=experimental, group=group)
        elif experimental:
            call = self._experimental_call
        if breaker.allow():
            try:
                predictions, probabilities = await judged_call(
                    call, executor, entry, rows, parsed.probabilities, parsed.columns
                )
            except ModelError:
                breaker.record(False)
                ERRORS.labels(name, str(version), "model_error").inc()
                raise
            except KeelError:  # the input, not the model: no verdict, but free a probe
                breaker.release()
                raise
            breaker.record(True)
        else:
            predictions, probabilities, answered = await self.protection.fallback(
                entry,
                body,
                misses,
                rows,
                parsed.probabilities,
                call,
                reparse=lambda older: self._parse(older, body, {}),
            )
            outcome.version, outcome.fallback = answered, True
        timings["model"] = (time.perf_counter() - mark) * 1000
        for j, i in enumerate(misses):
            outcome.predictions[i] = predictions[j]
            if probabilities is not None and outcome.probabilities is not None:
                outcome.probabilities[i] = probabilities[j]
        if self.cache is not None and not outcome.fallback:
            mark = time.perf_counter()
            entities = parsed.entity_keys
            await self.cache.put(
                name,
                version,
                [parsed.keys[i] for i in misses],
                [
                    (predictions[j], None if probabilities is None else probabilities[j])
                    for j in range(len(misses))
                ],
                None if entities is None else [entities[i] for i in misses],
            )
            timings["cache"] += (time.perf_counter() - mark) * 1000
        return outcome

    async def _experimental_call(
        self,
        entry: PoolEntry,
        rows: list[tuple[Any, ...]],
        probabilities: bool,
        columns: Sequence[str],
        *,
        group: str | None = None,
    ) -> BatchResult:
        """:meth:`_call` in the bulkhead's partition (an experimental arm's model call)."""
        return await self._call(entry, rows, probabilities, columns, experimental=True, group=group)

    async def _call(
        self,
        entry: PoolEntry,
        rows: list[tuple[Any, ...]],
        probabilities: bool,
        columns: Sequence[str],
        *,
        experimental: bool = False,
        group: str | None = None,
    ) -> BatchResult:
        """Predict ``rows`` through the version's micro-batcher, on the gateway's threads or,
        ``experimental``, on the bulkhead's (each lane its own batcher per version); the
        arms of deployment ``group`` share one batcher, a lane each (``batcher.py``)."""
        executor = self.bulkhead.executor if experimental else self.executor
        if not self.settings.serving_batching or entry.spec.columns is None:
            # Without a signature each request names its own columns: never batched.
            BATCH_ROWS.labels(entry.name).observe(len(rows))
            loop = asyncio.get_running_loop()
            run = functools.partial(entry.run, rows, probabilities, columns)
            return await loop.run_in_executor(executor, run)
        if group is not None:
            arms = self.arm_batchers.get(group)
            if arms is None:
                arms = MicroBatcher(
                    None,
                    None,
                    max_rows=self.settings.serving_batch_max_size,
                    max_wait_us=self.settings.serving_batch_max_wait_us,
                )
                self.arm_batchers[group] = arms
            return await arms.submit(rows, probabilities, self._lane(entry, experimental))
        key = (entry.name, entry.version, experimental)
        batcher = self.batchers.get(key)
        if batcher is None or batcher.owner is not entry:  # first call, or reloaded since
            if batcher is not None:  # its callers are answered by the entry they came for
                batcher.retire()
            batcher = MicroBatcher(
                entry.run,
                executor,
                max_rows=self.settings.serving_batch_max_size,
                max_wait_us=self.settings.serving_batch_max_wait_us,
                on_batch=BATCH_ROWS.labels(entry.name).observe,
                owner=entry,
            )
            self.batchers[key] = batcher
        return await batcher.submit(rows, probabilities)

    def _lane(self, entry: PoolEntry, experimental: bool) -> Lane:
        """The lane of ``entry`` (a new one when the version was reloaded) in a deployment's
        batcher: the gateway's threads, or the bulkhead's for an ``experimental`` arm."""
        key = (entry.name, entry.version, experimental)
        lane = self.lanes.get(key)
        if lane is None or lane.owner is not entry:
            lane = Lane(
                entry.run,
                self.bulkhead.executor if experimental else self.executor,
                BATCH_ROWS.labels(entry.name).observe,
                entry,
                experimental,
            )
            self.lanes[key] = lane
        return lane
