"""The one place where exceptions become HTTP responses.

Body shape: ``{"error": {"code", "message", "field", "detail"}}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keel.api.limits import BodyTooLarge
from keel.errors import (
    BadRequest,
    InvalidInput,
    KeelError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger("keel.api")


def error_response(error: KeelError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON response for ``error`` with its class's status."""
    return JSONResponse(error.to_payload(), status_code=error.status, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(location[-1] if location else "body")


def _validation_error(exc: RequestValidationError) -> KeelError:
    errors = exc.errors()
    first: dict[str, Any] = (
        errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    )
    field = _field(tuple(first.get("loc", ())))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return BadRequest(f"malformed JSON: {ctx.get('error', 'cannot parse')}", field="body")
    detail = [
        {"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg")} for e in errors[:20]
    ]
    return InvalidInput(message, field=field, errors=detail)


def install_error_handlers(app: FastAPI) -> None:
    """Map KeelError, validation errors, HTTP errors and unexpected exceptions to JSON."""

    @app.exception_handler(KeelError)
    async def _keel_error(_request: Request, exc: KeelError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

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
        else:
            error = KeelError(str(exc.detail))
            return JSONResponse(error.to_payload(), status_code=exc.status_code)
        return error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(KeelError(f"internal error ({type(exc).__name__})"))
