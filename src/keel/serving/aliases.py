"""Which version each alias is served from, and the warm switch after an alias moves.

The gateway reads an alias from the registry the first time it is asked for it, then
again every ``KEEL_SERVING_ALIAS_REFRESH_MS`` in the background (0: on every request too),
and at once when an ``alias`` event arrives over Redis. When the alias has moved, the new
version is loaded and warmed up in the background while the version that served so far
keeps answering; the switch happens once the warm-up passed. If the new version fails to
load, the previous one keeps serving (and the failure is reported in the status). Every
response names the version that answered, and cache keys hold that version, so an
alias move never returns another version's cached predictions.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from keel.errors import KeelError, NotFound
from keel.registry.service import RegistryService
from keel.serving.pool import ModelPool

__all__ = ["AliasState", "AliasTable"]

log = logging.getLogger("keel.serving")


@dataclass(slots=True)
class AliasState:
    """The version an alias is served from (``serving``) and where it points (``target``)."""

    serving: int | None = None
    target: int | None = None
    error: str | None = None
    warming: asyncio.Task[None] | None = None


class AliasTable:
    """Alias → serving version for one gateway."""

    def __init__(self, registry: RegistryService, pool: ModelPool, *, refresh_ms: int) -> None:
        self.registry = registry
        self.pool = pool
        self.refresh_ms = refresh_ms
        self.states: dict[tuple[str, str], AliasState] = {}

    def read(self, name: str, alias: str) -> int:
        """The version the alias points at in the registry (blocking; run in a thread)."""
        return self.registry.alias_version(name, alias)

    async def version(self, name: str, alias: str) -> int:
        """The version to serve ``name@alias`` from; loads it on first use (cold)."""
        key = (name, alias)
        state = self.states.get(key)
        if state is None or state.target is None or self.refresh_ms == 0:
            current = await asyncio.to_thread(self.read, name, alias)
            state = self.states.setdefault(key, AliasState())
            self.observe(key, current)
        if state.serving is None:
            assert state.target is not None
            await self.pool.get(name, state.target)  # 404 / 503 propagate
            state.serving = state.target
        return state.serving

    def serving_now(self, name: str, alias: str) -> int | None:
        """The version serving ``name@alias`` if known without a registry read, else None."""
        if self.refresh_ms == 0:
            return None
        state = self.states.get((name, alias))
        return None if state is None else state.serving

    async def pin(self, name: str, alias: str) -> int:
        """Resolve and warm the alias now (preloading); raises when it cannot be served."""
        current = await asyncio.to_thread(self.read, name, alias)
        # Warm before recording any state: a failed preload must leave the alias unknown, so
        # the next request resolves and loads it like any cold alias (503 naming the load
        # error), instead of finding a state with no target.
        await self.pool.warm(name, current)
        state = self.states.setdefault((name, alias), AliasState())
        state.serving = state.target = current
        return current

    def observe(self, key: tuple[str, str], current: int) -> None:
        """Record where the alias points now; start a warm switch when it moved."""
        state = self.states.setdefault(key, AliasState())
        state.target = current
        if state.serving is None or state.serving == current:
            return
        warming = state.warming is not None and not state.warming.done()
        if not warming and self.pool.peek(key[0], current) is not None:  # loaded: switch now
            state.serving, state.error = current, None
            return
        if state.warming is None or state.warming.done():
            state.warming = asyncio.get_running_loop().create_task(self._switch(key, current))

    async def _switch(self, key: tuple[str, str], version: int) -> None:
        state = self.states.get(key)
        try:
            await self.pool.warm(key[0], version)
        except KeelError as exc:
            log.warning("alias %s@%s → v%s not switched: %s", *key, version, exc.message)
            if state is not None:
                state.error = exc.message
            return
        if state is not None and state.target == version:
            state.serving, state.error = version, None
            log.info("alias %s@%s now served from v%s", *key, version)

    async def refresh(self, keys: list[tuple[str, str]] | None = None) -> None:
        """Re-read aliases (all known ones by default); a deleted alias is forgotten."""
        for key in keys if keys is not None else list(self.states):
            try:
                current = await asyncio.to_thread(self.read, *key)
            except NotFound:
                self.states.pop(key, None)
                continue
            except Exception as exc:  # the registry may be briefly unreachable: try later
                log.warning("cannot re-read alias %s@%s: %r", *key, exc)
                continue
            self.observe(key, current)

    async def run(self) -> None:
        """Refresh forever (at least once a second, so moves are warmed without traffic)."""
        interval = self.refresh_ms / 1000 if self.refresh_ms else 1.0
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    async def close(self) -> None:
        """Cancel warm switches in progress."""
        for state in self.states.values():
            if state.warming is not None and not state.warming.done():
                state.warming.cancel()

    def describe(self) -> dict[str, dict[str, object]]:
        """``{"name@alias": {"serving", "target", "error"}}``."""
        return {
            f"{name}@{alias}": {"serving": s.serving, "target": s.target, "error": s.error}
            for (name, alias), s in self.states.items()
        }
