"""ASGI middleware rejecting request bodies above the configured size with 413.

Raw uploads (run artifacts, dataset versions) have their own, larger limit
(``KEEL_MAX_UPLOAD_BYTES``); every other body is held to ``KEEL_MAX_REQUEST_BYTES``.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.api.linger import discard_body
from keel.errors import PayloadTooLarge

__all__ = ["UPLOAD_ROUTES", "BodySizeLimit", "BodyTooLarge"]

#: (method, path pattern) of routes whose body is a raw upload.
UPLOAD_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PUT", re.compile(r"^/v1/runs/[^/]+/artifacts/.+$")),
    ("POST", re.compile(r"^/v1/datasets/[^/]+/versions/?$")),
)


class BodyTooLarge(HTTPException):
    """Raised while a streamed body is read; carries the limit into the error's detail."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body exceeds {limit} bytes")
        self.limit = limit


class BodySizeLimit:
    """Refuse bodies over ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_upload_bytes or max_bytes

    def limit_for(self, method: str, path: str) -> int:
        """The body limit of a request."""
        for upload_method, pattern in UPLOAD_ROUTES:
            if method == upload_method and pattern.match(path):
                return self.max_upload_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guarded = await self.guard(scope, receive, send)
        if guarded is not None:
            await self.app(scope, guarded, send)

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The ``receive`` to read the body with, or None after answering 413.

        A declared Content-Length within the limit needs no counting: the server
        delivers exactly that many bytes (httptools and h11 frame bodies by it), so the
        client's ``receive`` is returned as is. Shared with the front door.
        """
        limit = self.limit_for(scope.get("method", "GET"), scope.get("path", ""))
        declared = None
        for key, value in scope.get("headers") or ():
            if key == b"content-length":
                declared = value
                break
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await discard_body(scope, receive)  # so plain clients read the 413
                await self._reject(send, limit)
                return None
            return receive
        seen = 0

        async def limited_receive() -> Message:
            # A body without (or lying about) Content-Length is counted as it
            # streams; the HTTPException reaches the app's one error handler
            # (FastAPI re-raises HTTPExceptions raised while reading a body).
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body", False):
                        await discard_body(scope, receive)  # so plain clients read the 413
                    raise BodyTooLarge(limit)
            return message

        return limited_receive

    async def _reject(self, send: Send, limit: int) -> None:
        import json

        error = PayloadTooLarge(f"request body exceeds {limit} bytes", field="body", limit=limit)
        body = json.dumps(error.to_payload()).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
