"""The gateway's bookkeeping: what an answered request leaves behind, and its background tasks.

:class:`Bookkeeping` is a mixin of :class:`~keel.serving.gateway.Gateway`: every answer
path (:mod:`keel.serving._predictpath`, :mod:`keel.serving._hitanswers`) ends in
:meth:`~Bookkeeping._respond` or :meth:`~Bookkeeping._served`, which count the request in the
version's Prometheus series and hand its rows to the prediction log; cache hits are counted
by :meth:`~Bookkeeping._count_hits`. The gateway's background tasks are kept here too, so
each one is dropped when it ends and :meth:`~keel.serving.gateway.Gateway.close` cancels
those still running. Methods are plain methods on the gateway: no call is added per request.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.serving._commit import REFUSED, CommitGroup
from keel.serving._eventtime import replay_extra
from keel.serving.armroutes import ArmRoute, DeploymentRoute
from keel.serving.exploration import ExplorationPolicy, explore_rows
from keel.serving.hits import response_body
from keel.serving.interface import PredictionSink, PredictResult
from keel.serving.metrics import FALLBACKS, cache_series, series
from keel.serving.records import ServedRequest

if TYPE_CHECKING:
    from keel.serving.pool import PoolEntry
    from keel.serving.validation import ParsedInput

__all__ = ["Bookkeeping", "Via"]

#: A deployment request's route and the arm chosen for it (None on model routes).
Via = tuple[DeploymentRoute, ArmRoute] | None
#: The rows' exploration flags and propensities (None: the model explores nothing).
Explored = tuple[list[bool], list[float]] | None


@dataclass(slots=True)
class _Outcome:
    predictions: list[Any]
    probabilities: list[Any] | None
    version: int
    fallback: bool
    hits: list[bool]


class Bookkeeping:
    """Series, prediction-log rows and background tasks of a gateway (a mixin)."""

    # Set by Gateway.__init__.
    prediction_log: PredictionSink | None
    _log: Callable[[ServedRequest], CommitGroup | None]
    _durable: bool
    cache_hits: Counter[str]
    _tasks: set[asyncio.Task[Any]]
    #: model → exploration policy (keel.serving.exploration); absent: answers as the model's
    exploring: dict[str, ExplorationPolicy]

    def _log_records(self, served: ServedRequest) -> None:
        if self.prediction_log is not None:
            for record in served.records():
                self.prediction_log.append(record)

    def _respond(
        self,
        entry: PoolEntry,
        parsed: ParsedInput,
        outcome: _Outcome,
        started: float,
        timings: dict[str, float],
        via: Via = None,
    ) -> PredictResult:
        """The response body; metrics and prediction-log records on the way."""
        name = entry.name
        elapsed_ms = (time.perf_counter() - started) * 1000
        request_id = f"{random.getrandbits(128):032x}"  # uuid4 reads urandom: 10x slower
        answers, explored = outcome.predictions, None  # type: list[Any], Explored
        policy = self.exploring.get(name)  # the one lookup a model without a policy costs
        if policy is not None:  # R-TRN-24: the explored rows get the policy's action
            answers, flags, propensity = explore_rows(
                policy, name, request_id, parsed.entity_keys, outcome.predictions
            )
            explored = (flags, propensity)
        result = response_body(
            answers,
            name,
            outcome.version,
            request_id,
            cached=all(outcome.hits),
            fallback=outcome.fallback,
            probabilities=outcome.probabilities if parsed.probabilities else None,
            deployment=None if via is None else via[0].name,
            arm=None if via is None else via[1].name,
        )
        if explored is not None:
            result["explored"] = explored[0]
        if outcome.fallback:
            FALLBACKS.labels(name, str(outcome.version)).inc()
        if entry.first_request_ms is None:
            entry.first_request_ms = elapsed_ms
            entry.first_request_warm = entry.warmup_ms is not None
        commit = self._served(
            name,
            outcome.version,
            parsed,
            request_id,
            elapsed_ms,
            outcome.predictions,
            outcome.probabilities,
            outcome.hits,
            outcome.fallback,
            via,
            explored,
        )
        return PredictResult(result, timings, commit)

    def _served(
        self,
        name: str,
        version: int,
        parsed: ParsedInput,
        request_id: str,
        elapsed_ms: float,
        predictions: Sequence[Any],
        probabilities: Sequence[Any] | None,
        hits: Sequence[bool],
        fallback: bool,
        via: Via = None,
        explored: Explored = None,
    ) -> CommitGroup | None:
        """Count an answered request in the version's series and log its rows; with group
        commit, the write the answer must wait for. ``explored``: the rows' exploration
        flags and propensities, when the model has a policy (``predictions`` stay the
        model's: the log keeps what the model said)."""
        requests, latency = series(name, version)
        requests.inc()
        latency.observe(elapsed_ms / 1000)
        if self.prediction_log is not None:
            at_ms = int(time.time() * 1000)
            extra = None if via is None else via[1].extra
            if parsed.event_ms is not None:  # a replay: logged at its event time (#15.19)
                at_ms, extra = parsed.event_ms, replay_extra(extra, at_ms)
            return self._log(
                ServedRequest(
                    request_id,
                    at_ms,
                    name,
                    version,
                    parsed.columns,
                    parsed.rows,
                    predictions,
                    probabilities,
                    hits,
                    fallback,
                    elapsed_ms,
                    parsed.entity_keys,
                    None if via is None else via[0].name,
                    None if via is None else via[1].name,
                    extra,
                    None if explored is None else explored[0],
                    None if explored is None else explored[1],
                )
            )
        return REFUSED if self._durable else None

    def _count_hits(self, name: str, rows: int) -> None:
        """Count ``rows`` answered from the cache (status counters and the Prometheus series)."""
        self.cache_hits[name] += rows
        cache_series(name)[0].inc(rows)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background until it ends or :meth:`close` cancels it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
