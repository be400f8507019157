"""keel's one error hierarchy. Each class carries its HTTP status and CLI exit code.

::

    KeelError (500, exit 1)
    ├── InvalidInput (422, exit 2)        also a ValueError
    │   ├── BadRequest (400, exit 2)      malformed request, e.g. bad filter syntax
    │   │   └── MethodNotAllowed (405, exit 2)
    │   └── PayloadTooLarge (413, exit 2)
    ├── NotFound (404, exit 1)            also a LookupError
    ├── Conflict (409, exit 1)
    ├── Unauthorized (401, exit 1)
    ├── Forbidden (403, exit 1)
    ├── Unavailable (503, exit 1)
    │   └── InsufficientStorage (507, exit 1)  a disk the write needs is full (or read-only)
    ├── ModelError (502, exit 1)          the served model raised; detail.error_class names it
    ├── GatewayTimeout (504, exit 1)
    └── RateLimited (429, exit 1)         detail.retry_after_s → Retry-After header

The API maps these to responses in exactly one place (``keel.api.errors``); the
HTTP client maps responses back with :func:`error_from_payload`, so local and
remote callers catch the same exceptions.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "InsufficientStorage",
    "InvalidInput",
    "KeelError",
    "MethodNotAllowed",
    "ModelError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "error_from_payload",
]


class KeelError(Exception):
    """Base of every error keel raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, field: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail

    def to_payload(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "field", "detail"}}``."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "field": self.field,
                "detail": _jsonable(self.detail),
            }
        }


class InvalidInput(KeelError, ValueError):
    """The caller sent something keel cannot accept; ``field`` names it."""

    status, code, exit_code = 422, "invalid_input", 2


class BadRequest(InvalidInput):
    """The request could not be parsed (bad JSON, bad filter syntax)."""

    status, code = 400, "bad_request"


class MethodNotAllowed(BadRequest):
    """The route exists but not for this HTTP method."""

    status, code = 405, "method_not_allowed"


class PayloadTooLarge(InvalidInput):
    """The request body or upload exceeds a configured limit."""

    status, code = 413, "payload_too_large"


class NotFound(KeelError, LookupError):
    """The named experiment, run, model, version or dataset does not exist."""

    status, code = 404, "not_found"


class Conflict(KeelError):
    """The write contradicts existing state (duplicate name, changed param)."""

    status, code = 409, "conflict"


class Unauthorized(KeelError):
    """No valid credentials were presented."""

    status, code = 401, "unauthorized"


class Forbidden(KeelError):
    """The credentials are valid but lack the permission."""

    status, code = 403, "forbidden"


class Unavailable(KeelError):
    """A dependency (database, model, queue) cannot serve the request now."""

    status, code = 503, "unavailable"


class InsufficientStorage(Unavailable):
    """A disk the write needs is full (database, artifacts, other files) or read-only.

    The message says what to free; ``detail["store"]`` is ``"database"`` for the database's
    disk, ``detail["errno"]`` names a file write's error. Both SDK transports raise it
    (:mod:`keel.store.storage_full`).
    """

    status, code = 507, "insufficient_storage"


class ModelError(KeelError):
    """The served model raised while predicting; ``detail["error_class"]`` names its error."""

    status, code = 502, "model_error"


class GatewayTimeout(KeelError):
    """A prediction did not finish within the serving timeout."""

    status, code = 504, "gateway_timeout"


class RateLimited(KeelError):
    """The client sent more requests than its limit; retry after ``detail["retry_after_s"]``."""

    status, code = 429, "rate_limited"


def _all_subclasses(cls: type[KeelError]) -> list[type[KeelError]]:
    found: list[type[KeelError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    return str(value)


def error_from_payload(status: int, payload: Any) -> KeelError:
    """Rebuild the :class:`KeelError` a server sent, from its status and JSON body."""
    classes: list[type[KeelError]] = [KeelError, *_all_subclasses(KeelError)]
    body = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        # Not keel's shape (a proxy's error page, say): the status still tells the kind.
        by_status = next((c for c in classes if c.status == status), KeelError)
        return by_status(f"server answered {status}: {str(payload)[:200]}")
    code = body.get("code")
    message = str(body.get("message") or f"server answered {status}")
    raw_detail = body.get("detail")
    detail: dict[str, Any] = raw_detail if isinstance(raw_detail, dict) else {}
    by_code = {known.code: known for known in classes}
    cls = by_code.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = next((c for c in by_code.values() if c.status == status), KeelError)
    field = body.get("field")
    return cls(message, field=field if isinstance(field, str) else None, **detail)
