"""Deployment routes of one gateway: which arm, hence which model version, answers a request.

Every answer path (the fast lane, the front door, the cached-hit path and the FastAPI
route) reaches :class:`~keel.serving.gateway.Gateway`, which calls :meth:`DeploymentRoutes.pick`
(or :meth:`DeploymentRoutes.pick_now` where nothing may be awaited) *before* the prediction
cache: the chosen arm's version is part of every cache key, so a cached answer can never
come from another arm.

The table holds, per deployment, the arms with their versions and live weights, built
from the deployment service's stored state (:mod:`keel.deploy.state`) through a narrow
read interface (:class:`DeploymentReader`) given at gateway construction; serving never
reads the deployment tables itself. It is refreshed like the alias table
(:mod:`keel.serving.aliases`): on a change made in this process (the service's listener),
on a ``deployment`` event over Redis from another process, and every refresh interval.
Each gateway reports what it serves (state version and weights) to the service, so a
deployment's status says the rollout is complete only when every live replica agrees
(R-DEP-06).

What a route is, how it is built from a stored deployment and how the request's
``routing_key`` picks an arm is in :mod:`keel.serving.armroutes` (its names are
importable from here too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.errors import NotFound
from keel.serving.armroutes import (
    MAX_ROUTING_KEY,
    UNFINISHED,
    ArmRoute,
    DeploymentRoute,
    StoredDeployment,
    build_route,
    routing_key_of,
    versions_left,
)

__all__ = [
    "ArmRoute",
    "DeploymentReader",
    "DeploymentRoute",
    "DeploymentRoutes",
    "MAX_ROUTING_KEY",
    "StoredDeployment",
    "UNFINISHED",
    "build_route",
    "routing_key_of",
    "versions_left",
]

log = logging.getLogger("keel.serving")


class DeploymentReader(Protocol):
    """What the gateway reads from the deployment service (``keel.deploy.service``)."""

    def get(self, name: str) -> StoredDeployment:
        """One deployment; raises NotFound."""
        ...

    def list(self, model: str | None = None) -> Sequence[StoredDeployment]:
        """Every deployment."""
        ...

    def report_replica(
        self, name: str, replica: str, state_version: int, weights: dict[str, float]
    ) -> None:
        """This replica serves ``name`` at ``state_version`` with ``weights``."""
        ...


@dataclass(slots=True)
class _Report:
    state_version: int
    weights: dict[str, float]
    at_s: float


@dataclass(slots=True)
class DeploymentRoutes:
    """Deployment name → :class:`DeploymentRoute` for one gateway (see the module docstring).

    ``on_change(before, after)`` runs on the event loop's thread or the caller's whenever a
    route is replaced (the gateway drops the cache entries of versions that left and warms
    new ones).
    """

    reader: DeploymentReader | None
    replica: str
    refresh_s: float = 1.0
    report_every_s: float = 15.0
    on_change: Callable[[DeploymentRoute | None, DeploymentRoute], None] | None = None
    routes: dict[str, DeploymentRoute] = field(default_factory=dict)
    _reported: dict[str, _Report] = field(default_factory=dict)
    _last_error: str | None = None
    _stale: set[str] = field(default_factory=set)
    _rereads: set[str] = field(default_factory=set)

    def pick_now(self, name: str, body: bytes) -> tuple[DeploymentRoute, ArmRoute] | None:
        """The route and arm of a request when the deployment is known (no I/O), else None.

        Raises InvalidInput for a bad ``routing_key``.
        """
        route = self.routes.get(name)
        if route is None:
            return None
        return route, route.pick(body)[0]

    def pick_known(self, name: str, body: bytes) -> tuple[DeploymentRoute, ArmRoute, Any] | None:
        """:meth:`pick` without awaiting when the deployment is known (else None): the
        gateway's every deployment request, so no coroutine is made for it."""
        route = self.routes.get(name)
        if route is None:
            return None
        arm, decoded = route.pick(body)
        return route, arm, decoded

    async def pick(self, name: str, body: bytes) -> tuple[DeploymentRoute, ArmRoute, Any]:
        """The route and arm of a request, and the body decoded when the routing key needed
        it (else None; see :meth:`DeploymentRoute.pick`); reads an unknown deployment first
        (NotFound)."""
        route = self.routes.get(name)
        if route is None:
            route = await self.load(name)
        arm, decoded = route.pick(body)
        return route, arm, decoded

    async def load(self, name: str) -> DeploymentRoute:
        """Read one deployment now (first request, or an event naming it) and apply it."""
        if self.reader is None:
            raise NotFound(f"deployment {name!r} not found", field="name")
        found = await asyncio.to_thread(self.reader.get, name)
        return self.apply(found)

    def apply(self, deployment: StoredDeployment) -> DeploymentRoute:
        """Serve ``deployment`` from now on, unless a newer state of it is already served
        (an event and a refresh may race); returns the route served."""
        current = self.routes.get(deployment.name)
        if current is not None and current.state_version >= deployment.version:
            return current
        route = build_route(deployment)
        self.routes[deployment.name] = route  # one assignment: the next request sees it
        if self.on_change is not None:
            self.on_change(current, route)
        return route

    def mark_stale(self, name: str) -> bool:
        """Note that ``name`` changed elsewhere; True when a :meth:`reread` task must start
        (one per deployment, however many events arrive meanwhile)."""
        self._stale.add(name)
        if name in self._rereads:
            return False
        self._rereads.add(name)
        return True

    async def reread(self, name: str) -> None:
        """Read ``name`` again while it keeps changing, then report what is served."""
        try:
            while name in self._stale:
                self._stale.discard(name)
                try:
                    await self.load(name)
                except NotFound:
                    self.forget(name)
                except Exception as exc:  # the periodic refresh tries again
                    log.warning("cannot re-read deployment %s: %r", name, exc)
            await self.report()
        finally:
            self._rereads.discard(name)

    def forget(self, name: str) -> None:
        """Stop serving a deployment that no longer exists."""
        self.routes.pop(name, None)
        self._reported.pop(name, None)

    async def refresh(self) -> None:
        """Re-read every deployment (one query), then report what this replica serves."""
        if self.reader is None:
            return
        try:
            found = await asyncio.to_thread(self.reader.list)
        except Exception as exc:  # the database may be briefly unreachable: try later
            self._last_error = repr(exc)
            log.warning("cannot re-read deployments: %r", exc)
            return
        self._last_error = None
        names = {d.name for d in found}
        for deployment in found:
            self.apply(deployment)
        for gone in set(self.routes) - names:
            self.forget(gone)
        await self.report()

    async def report(self, now_s: float | None = None) -> None:
        """Tell the service what this replica serves: at once after a change, and every
        ``report_every_s`` for unfinished deployments (the service's liveness window)."""
        if self.reader is None:
            return
        now = time.monotonic() if now_s is None else now_s
        due: list[DeploymentRoute] = []
        for name, route in self.routes.items():
            last = self._reported.get(name)
            changed = last is None or last.state_version != route.state_version
            stale = last is not None and now - last.at_s >= self.report_every_s
            if changed or (stale and route.status in UNFINISHED):
                due.append(route)
        for route in due:
            try:
                await asyncio.to_thread(
                    self.reader.report_replica,
                    route.name,
                    self.replica,
                    route.state_version,
                    route.weights,
                )
            except Exception as exc:  # reported again at the next refresh
                log.warning("cannot report deployment %s: %r", route.name, exc)
                continue
            self._reported[route.name] = _Report(route.state_version, route.weights, now)

    async def run(self) -> None:
        """Refresh forever, every ``refresh_s``."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)

    def reported(self) -> dict[str, dict[str, Any]]:
        """What this replica last reported per deployment."""
        return {
            name: {"state_version": r.state_version, "weights": r.weights}
            for name, r in self._reported.items()
        }

    def describe(self) -> dict[str, Any]:
        """Routes served, what was reported, and the last refresh error."""
        return {
            "replica": self.replica,
            "routes": {name: route.describe() for name, route in sorted(self.routes.items())},
            "reported": self.reported(),
            "error": self._last_error,
        }
