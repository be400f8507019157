"""The one place where exceptions become HTTP responses.

Body shape: ``{"error": {"code", "message", "field", "detail"}}``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel._models import invalid_errors, invalid_input
from keel.api.limits import BodyTooLarge
from keel.errors import (
    BadRequest,
    InvalidInput,
    KeelError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from keel.serving._json import MAX_DEPTH
from keel.store.storage_full import storage_full

__all__ = [
    "ERROR_RESPONSES",
    "AnsweredErrorsStop",
    "ErrorBody",
    "error_response",
    "install_error_handlers",
    "unexpected_error",
]

log = logging.getLogger("keel.api")


class _ErrorPayload(BaseModel):
    code: str
    message: str
    field: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message", "field", "detail"}}``."""

    error: _ErrorPayload


# Inline (not ``model=``): FastAPI documents a model under the route's own media
# type, which would claim text/html for the errors of HTML routes.
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "detail": {"type": "object"},
            },
        }
    },
}

#: Documented on every operation (the OpenAPI then matches what keel really answers).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }
    for status, description in (
        (400, "Malformed request (bad JSON, bad filter syntax)"),
        (401, "Missing or invalid API token"),
        (403, "The caller's role or model ownership does not allow this"),
        (404, "Unknown resource or route"),
        (405, "Method not allowed on this path"),
        (409, "Conflicts with existing state"),
        (413, "Body or upload above the configured limit"),
        (422, "A field has a bad value; `field` names it"),
        (503, "Database or another dependency unavailable"),
        (507, "A disk the write needs is full (database, artifacts, prediction log)"),
    )
}


def error_response(error: KeelError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON response for ``error`` with its class's status.

    An error that says when to retry (rate limits, open breakers) gets ``Retry-After``.
    A database error caused by a full disk answers 507, not 503
    (:mod:`keel.store.storage_full`, the rule the embedded SDK follows too).
    """
    error = storage_full(error) or error
    retry = error.detail.get("retry_after_s")
    if retry is not None:
        headers = {"Retry-After": str(retry), **(headers or {})}
    return JSONResponse(error.to_payload(), status_code=error.status, headers=headers)


def unexpected_error(exc: Exception) -> KeelError:
    """What an exception no handler knows becomes: 507 when a disk is full, else a 500
    naming only the exception's class (the traceback goes to the log)."""
    return storage_full(exc) or KeelError(f"internal error ({type(exc).__name__})")


#: The first element of a request error's location says where the value came from.
_SOURCES = ("body", "query", "path", "header", "cookie")


def _validation_error(exc: RequestValidationError) -> KeelError:
    """FastAPI's 422 worded by :func:`keel._models.invalid_errors`, as the embedded SDK words it.

    Only the leading source (``body``, ``query``, ...) is dropped from each location:
    a field that happens to be called ``path`` deeper in a body keeps its name.
    """
    errors = list(exc.errors())
    if errors and errors[0].get("type") == "json_invalid":
        ctx = errors[0].get("ctx") or {}
        return BadRequest(f"malformed JSON: {ctx.get('error', 'cannot parse')}", field="body")
    located: list[ErrorDetails] = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        loc = loc[1:] if loc[:1] and loc[0] in _SOURCES else loc
        located.append(cast("ErrorDetails", {**error, "loc": loc}))
    return invalid_errors(located)


def _unparsable(exc: StarletteHTTPException) -> BadRequest:
    """FastAPI's 400 for a body its parser raised on (not UTF-8, nested too deep), worded.

    FastAPI turns any exception of ``json.loads`` other than a decode error into a bare
    ``HTTPException(400)``; the cause says which (issue 15 item 8: it was ``"internal"``).
    """
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        # the stdlib parser's depth is Python's recursion limit, close to MAX_DEPTH
        return BadRequest(
            f"malformed JSON: nested too deeply (about {MAX_DEPTH} levels at most)", field="body"
        )
    if isinstance(cause, UnicodeDecodeError):
        return BadRequest(f"malformed JSON: the body is not UTF-8 ({cause.reason})", field="body")
    reason = f": {type(cause).__name__}" if cause is not None else ""
    return BadRequest(f"{exc.detail}{reason}", field="body")


def install_error_handlers(app: FastAPI) -> None:
    """Map KeelError, validation errors, HTTP errors and unexpected exceptions to JSON."""

    @app.exception_handler(KeelError)
    async def _keel_error(_request: Request, exc: KeelError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(PydanticValidationError)
    async def _model_validation(_request: Request, exc: PydanticValidationError) -> JSONResponse:
        # a handler built a domain model from input the request schema let through
        return error_response(invalid_input(exc))

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # safety net: an integer the request schema did not bound reached the database
        log.info("overflow on %s %s: %s", request.method, request.url.path, exc)
        return error_response(InvalidInput(f"a number in the request is out of range ({exc})"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error: KeelError = NotFound(
                f"no route {request.method} {request.url.path}", field="path"
            )
        elif exc.status_code == 413:
            limit = {"limit": exc.limit} if isinstance(exc, BodyTooLarge) else {}
            error = PayloadTooLarge(str(exc.detail), field="body", **limit)
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"method {request.method} not allowed on {request.url.path}")
        elif exc.status_code == 400:
            error = _unparsable(exc)
        else:
            error = KeelError(str(exc.detail))
            return JSONResponse(error.to_payload(), status_code=exc.status_code)
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = unexpected_error(exc)
        if error.status == 500:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
        else:
            log.warning("%s %s: %s", request.method, request.url.path, error.message)
        return error_response(error)


class AnsweredErrorsStop:
    """ASGI wrapper around Starlette's outermost error layer: an unexpected exception whose
    500 was sent in full stops here instead of reaching the server.

    That layer answers with the ``Exception`` handler above (which logs the traceback) and
    then re-raises for the server to log; uvicorn then closes the socket under the client,
    and the client's next request on that keep-alive connection was reset (39 of 40 in
    tests/api/test_unexpected_keepalive.py): one bug failed a second, innocent request.
    An exception before or during the response still reaches the server, which closes
    the connection as it must for a response it cannot finish.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answered = False

        async def sending(message: Message) -> None:
            nonlocal answered
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered = True

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if not answered:
                raise
