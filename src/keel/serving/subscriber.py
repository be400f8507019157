"""Receive invalidation events from Redis pub/sub for as long as the gateway runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from keel.errors import InvalidInput
from keel.serving.events import CHANNEL, Invalidation

__all__ = ["listen"]

log = logging.getLogger("keel.serving")


async def listen(
    client: Any, handle: Callable[[Invalidation], object], subscribed: asyncio.Event
) -> None:
    """Subscribe with ``client`` (``redis.asyncio.Redis``) and pass each event to ``handle``.

    ``subscribed`` is set once the subscription stands. A lost connection is retried every
    second; malformed messages are logged and skipped. Runs until cancelled.
    """
    while True:
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(CHANNEL)
            subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    handle(Invalidation.from_json(message["data"]))
                except InvalidInput as exc:
                    log.warning("ignored invalidation event: %s", exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis restarted or unreachable: subscribe again
            log.warning("invalidation subscription lost (%r); retrying in 1 s", exc)
            await asyncio.sleep(1)
