"""The bulkhead (R-DEP-19): experimental arms run in a fixed partition of model capacity.

A deployment's canary, challenger and shadow arms are experiments: a challenger that
hangs or fails must not take the primary's model capacity with it. They are *confined*
(``ArmRoute.confined``) while a primary has live traffic to protect, that is while they
carry less than 100 % of it (a blue-green switch or a canary's last step moves all live
traffic to the candidate: nothing is left to protect, and a partition would only throttle
production). The gateway's model
calls run on ``KEEL_SERVING_PREDICT_THREADS`` threads; experimental arms never use them.
Their calls run on a pool of their own, of ``max(1, round(share × predict threads))``
threads (``KEEL_SERVING_EXPERIMENTAL_SHARE``, default 0.2), and at most
``slots × KEEL_SERVING_BATCH_MAX_SIZE`` experimental requests may be waiting for or in a
model call at once. When the partition is full:

- a **canary or challenger** request is answered by the deployment's **primary** instead
  (the arm is switched before the prediction-cache lookup, so the answer, its cache
  entries and its prediction-log row all say ``primary``): the caller is served, the
  rollout's numbers simply get fewer samples of that arm;
- a **shadow** copy is **dropped** (it would only add work to a full partition).

Both are counted in ``keel_bulkhead_total{deployment, arm, outcome}`` (``outcome`` is
``primary_fallback`` or ``shadow_dropped``) and in the ``bulkhead`` entry of
``/v1/serving/status``. Cache hits need no model call and never enter the partition.
Versions of experimental arms have their own micro-batchers (on the partition's
threads); a version serving as primary somewhere and as challenger elsewhere has one
of each.
"""

from __future__ import annotations

from collections import Counter as Tally
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter

from keel.serving.armroutes import ArmRoute, DeploymentRoute
from keel.serving.interface import limit_native_threads

__all__ = ["BULKHEAD", "Bulkhead"]

BULKHEAD = Counter(
    "keel_bulkhead_total",
    "Experimental-arm work refused by the full bulkhead partition, by outcome "
    "(primary_fallback: a canary/challenger request answered by the primary; "
    "shadow_dropped: a shadow copy not run)",
    ["deployment", "arm", "outcome"],
)


class Bulkhead:
    """The experimental arms' partition of one gateway: threads and an admission bound."""

    def __init__(
        self, *, share: float, predict_threads: int, batch_rows: int, model_threads: int
    ) -> None:
        self.share = share
        self.slots = max(1, round(share * predict_threads))
        #: Experimental requests admitted at once (waiting for or in a model call).
        self.capacity = self.slots * max(1, batch_rows)
        self.executor = ThreadPoolExecutor(
            self.slots,
            thread_name_prefix="keel-experimental",
            initializer=limit_native_threads,
            initargs=(model_threads,),
        )
        self.busy = 0
        self.counts: Tally[str] = Tally()

    def enter(self) -> bool:
        """Admit one experimental request (then call :meth:`leave`), or False when full."""
        if self.busy >= self.capacity:
            return False
        self.busy += 1
        return True

    def leave(self) -> None:
        """An admitted request is done with the model."""
        self.busy -= 1

    def admit(self, route: DeploymentRoute, arm: ArmRoute) -> tuple[ArmRoute, bool]:
        """The arm that answers a request routed to ``arm`` on the model path, and whether
        it holds a place in the partition (then call :meth:`leave` when done).

        A primary (any arm not ``confined``) needs no place. A confined arm gets one when
        the partition has room; when it is full the route's primary answers instead
        (counted), or, for a route without a primary, the arm is admitted over the bound.
        """
        if not arm.confined:
            return arm, False
        if self.enter():
            return arm, True
        primary = route.primary
        if primary is None:
            self.busy += 1  # nobody else can answer: admitted over the bound
            return arm, True
        self._count(route.name, arm.name, "primary_fallback")
        return primary, False

    def drop_shadow(self, route: DeploymentRoute, arm: ArmRoute) -> None:
        """Count a shadow copy the full partition did not run."""
        self._count(route.name, arm.name, "shadow_dropped")

    def _count(self, deployment: str, arm: str, outcome: str) -> None:
        BULKHEAD.labels(deployment, arm, outcome).inc()
        self.counts[f"{deployment}/{arm}:{outcome}"] += 1

    def describe(self) -> dict[str, Any]:
        """Partition size, current use and refusals, for ``/v1/serving/status``."""
        return {
            "share": self.share,
            "threads": self.slots,
            "capacity": self.capacity,
            "busy": self.busy,
            "refused": dict(self.counts),
        }

    def close(self) -> None:
        """Stop the partition's threads (queued calls are cancelled)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
