"""The embedded SDK's serving gateway: the server's gateway, run on a private event loop.

``Client().predict`` answers exactly as ``keel server`` would (signature checks, cache,
deployment routing, prediction log), because it is the same :class:`~keel.serving.gateway.Gateway`,
started on first use on a daemon thread's loop and closed with the client.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from keel.services import Services
    from keel.serving.gateway import Gateway
    from keel.serving.interface import Target

__all__ = ["EmbeddedGateway"]

T = TypeVar("T")


class EmbeddedGateway:
    """A started gateway over ``services`` on its own loop thread."""

    def __init__(self, services: Services) -> None:
        from keel.serving.startup import start_gateway

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="keel-sdk-gateway", daemon=True
        )
        self.thread.start()
        try:
            self.gateway: Gateway = self._run(
                start_gateway(
                    services.settings,
                    services.registry,
                    features=services.features,
                    deployments=services.deployments,
                )
            )
        except BaseException:
            self._stop()
            raise

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def predict(self, target: Target, body: bytes) -> dict[str, Any]:
        """The response body of one request (errors raised as the gateway raises them)."""
        return self._run(self.gateway.predict(target, body, client_key="sdk")).body

    def close(self) -> None:
        """Close the gateway (flushes its prediction log) and stop the loop."""
        try:
            self._run(self.gateway.close())
            self._run(_cancel_rest())
        finally:
            self._stop()

    def _stop(self) -> None:
        try:
            # Wait for the loop's worker threads, as asyncio.run does: loop.close() only
            # drops them, and a store read the gateway started there (asyncio.to_thread: an
            # alias or deployment re-read) kept its connection past the client's engine
            # dispose, open until garbage-collected (a ResourceWarning in a later test).
            self._run(self.loop.shutdown_default_executor())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


async def _cancel_rest() -> None:
    """Cancel what still runs on the loop (a model load the gateway started), so closing
    the loop destroys no pending task."""
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
