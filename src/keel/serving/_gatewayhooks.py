"""The gateway's listeners: cache invalidation events, alias moves and deployment changes.

:class:`GatewayHooks` is a mixin of :class:`~keel.serving.gateway.Gateway`. It drops cache
entries here and on every replica (:meth:`~GatewayHooks.invalidate`), applies the events of
other replicas (:meth:`~GatewayHooks.apply`), re-reads a served alias as soon as the registry
moves it, and follows deployment changes: a route change drops the cached predictions of
versions that stopped serving (R-SRV-06) and warms the versions a rollout needs. Route
picks and shadow copies happen on the answer paths; the route table and its replica
reports are :class:`~keel.serving.deployroutes.DeploymentRoutes`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from keel.errors import KeelError
from keel.serving._bookkeeping import Bookkeeping
from keel.serving.armroutes import UNFINISHED, DeploymentRoute, versions_left
from keel.serving.events import CHANNEL, Invalidation, make_invalidation

if TYPE_CHECKING:
    from keel.serving.aliases import AliasTable
    from keel.serving.cachefront import GuardedCache
    from keel.serving.deployroutes import DeploymentRoutes
    from keel.serving.pool import ModelPool

__all__ = ["GatewayHooks"]

log = logging.getLogger("keel.serving")


class GatewayHooks(Bookkeeping):
    """Invalidation, alias and deployment listeners of a gateway (a mixin)."""

    # Set by Gateway.__init__ (the loop by start()).
    id: str
    ready: bool
    cache: GuardedCache | None
    aliases: AliasTable
    pool: ModelPool
    routes: DeploymentRoutes
    events_applied: int
    _redis: Any
    _loop: asyncio.AbstractEventLoop | None
    _stale: set[tuple[str, str]]
    _rereads: set[tuple[str, str]]

    async def invalidate(
        self,
        *,
        model: str | None = None,
        version: int | None = None,
        entity: str | None = None,
        everything: bool = False,
    ) -> int:
        """Drop cache entries here and (with Redis) on every replica; returns entries dropped."""
        event = make_invalidation(
            model=model, version=version, entity=entity, everything=everything, origin=self.id
        )
        dropped = await self.cache.invalidate(event) if self.cache is not None else 0
        if self._redis is not None:
            await self._redis.publish(CHANNEL, event.to_json())
        return dropped

    def _alias_moved(self, name: str, alias: str, _version: int | None) -> None:
        """Registry listener (any thread): re-read a served alias now, not at the next poll."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and (name, alias) in self.aliases.states:
            loop.call_soon_threadsafe(self._refresh_alias, (name, alias))

    def _refresh_alias(self, key: tuple[str, str]) -> None:
        # One re-read task per alias, reading again while moves keep coming: a storm of
        # events costs a few registry reads, not one task each.
        self._stale.add(key)
        if key not in self._rereads:
            self._rereads.add(key)
            self._spawn(self._reread_alias(key))

    async def _reread_alias(self, key: tuple[str, str]) -> None:
        try:
            while key in self._stale:
                self._stale.discard(key)  # a move from now on makes the loop read again
                await self.aliases.refresh([key])
        finally:
            self._rereads.discard(key)

    def apply(self, event: Invalidation) -> int:
        """Apply an event from another replica; returns local entries dropped."""
        if event.origin == self.id:
            return 0
        self.events_applied += 1
        if event.kind == "alias" and event.model and event.alias:
            if (event.model, event.alias) in self.aliases.states:
                self._refresh_alias((event.model, event.alias))
            return 0
        if event.kind == "deployment" and event.deployment:
            if self.routes.mark_stale(event.deployment):
                self._spawn(self.routes.reread(event.deployment))
            return 0
        return self.cache.drop_local(event) if self.cache is not None else 0

    def _deployment_changed(self, deployment: Any, _event: str) -> None:
        """Deployment-service listener (any thread): serve the committed change from the next
        request on (one dict assignment), before the call that made it returns."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and self.ready:
            self.routes.apply(deployment)

    def _route_changed(self, before: DeploymentRoute | None, after: DeploymentRoute) -> None:
        """A route was replaced (any thread): on the loop, drop the cached predictions of
        versions that stopped serving it (R-SRV-06) and warm the versions it needs."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._after_route_change, before, after)

    def _after_route_change(self, before: DeploymentRoute | None, after: DeploymentRoute) -> None:
        if self.cache is not None:
            for version in versions_left(before, after):
                event = make_invalidation(model=after.model, version=version, origin=self.id)
                self.cache.drop_local(event)
        if after.status in UNFINISHED:  # every arm warm: an instant switch (back)
            for arm in (*after.arms.values(), *after.shadows, *after.standby):
                if self.pool.peek(after.model, arm.version) is None:
                    self._spawn(self._warm_quietly(after.model, arm.version))

    async def _warm_quietly(self, name: str, version: int) -> None:
        try:
            await self.pool.warm(name, version)
        except KeelError as exc:  # the first request of that arm reports it
            log.warning("cannot warm %s/%s for a deployment: %s", name, version, exc.message)
