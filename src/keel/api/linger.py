"""Lingering refusal: read and discard the rest of a body refused with 413, within bounds.

A server that answers 413 and closes while the client is still sending makes the kernel
reset the connection (unread data in the socket), and a plain client that sends its
whole body before reading (urllib, requests without streaming) sees "connection reset
by peer" instead of the 413 (issue 15 item 10). nginx solves it with a *lingering
close*: keep reading, and throwing away, what the client sends for a while. keel does
the same before it answers: up to :data:`LINGER_MAX_BYTES` bytes and
:data:`LINGER_MAX_S` seconds, after which the connection is closed as before (a bigger
or slower body still sees a reset, as it would with nginx).

A client that sent ``Expect: 100-continue`` is answered at once: it waits for the
server's go-ahead before sending the body, so there is nothing to discard, and reading
would invite the body it was about to be spared.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope

__all__ = ["LINGER_MAX_BYTES", "LINGER_MAX_S", "discard_body"]

#: Most bytes of a refused body read and thrown away before the connection is closed.
LINGER_MAX_BYTES = 64 * 1024 * 1024
#: Longest time spent reading them (a slow client is cut off after this).
LINGER_MAX_S = 10.0


def _expects_continue(scope: Scope) -> bool:
    for key, value in scope.get("headers") or ():
        if key == b"expect":
            return bool(value.lower() == b"100-continue")
    return False


async def discard_body(
    scope: Scope,
    receive: Receive,
    *,
    max_bytes: int = LINGER_MAX_BYTES,
    max_s: float = LINGER_MAX_S,
) -> bool:
    """Read the rest of the request body and drop it; True when it ended within bounds.

    Call it only while the body has not ended (a ``receive`` after the last chunk waits
    for the client to disconnect). A ``receive`` that counts the body
    (:class:`~keel.api.limits.BodySizeLimit`'s) may raise its own 413 meanwhile.
    """
    if _expects_continue(scope):
        return False
    seen = 0
    try:
        async with asyncio.timeout(max_s):
            while seen <= max_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return False  # the client went away
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False
    return False
