"""Shared building blocks of keel's domain models."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from numbers import Integral
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, ValidationError
from pydantic_core import ErrorDetails

from keel.errors import InvalidInput

__all__ = [
    "MAX_INT32",
    "MAX_INT64",
    "MAX_VERSION",
    "Entity",
    "JsonFloat",
    "Page",
    "decode_page_token",
    "encode_page_token",
    "error_field",
    "error_path",
    "error_reason",
    "invalid_errors",
    "invalid_field",
    "invalid_input",
    "now_ms",
    "stored_int",
]

T = TypeVar("T")


def now_ms() -> int:
    """Current UTC time in integer milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def _float_to_json(value: float) -> float | str:
    # JSON has no NaN/Infinity: send them as the strings Python's float() reads
    # back, so the value round-trips exactly instead of becoming null.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


#: A float that survives JSON: NaN and ±inf travel as "NaN" / "Infinity" / "-Infinity".
JsonFloat = Annotated[float, PlainSerializer(_float_to_json, when_used="json")]


#: How many of a validation's errors ``detail.errors`` lists.
MAX_LISTED_ERRORS = 20


def invalid_input(
    exc: ValidationError, *, whole: str = "body", hide: Collection[str] = ()
) -> InvalidInput:
    """A pydantic error as keel's InvalidInput naming the first bad field (``a.b[0]``).

    The one conversion every reader of a user's input goes through (a request body, a
    policy, a definition file, a CLI spec); see :func:`invalid_errors` for ``whole`` and
    ``hide``.
    """
    errors = exc.errors()
    return invalid_errors(errors, whole=whole, hide=hide) if errors else InvalidInput(str(exc))


def invalid_errors(
    errors: Sequence[ErrorDetails], *, whole: str = "body", hide: Collection[str] = ()
) -> InvalidInput:
    """Pydantic's error list as keel's InvalidInput, worded as :func:`invalid_input` does.

    ``field`` and the message name the first error (``window: expected a duration ...``);
    ``detail.errors`` lists up to :data:`MAX_LISTED_ERRORS` of them as ``{field, message}``.
    An error with no location (a model-level check) names ``whole``; ``hide`` lists
    location parts left out of every path (a union's tags, which name no field). The API's
    422 for a request body is built here too (its locations stripped of ``body``/``query``),
    so both SDK transports, plain HTTP and every document reader word a bad input alike.
    """
    if not errors:
        return InvalidInput("invalid input", field=whole)
    listed = [
        {"field": error_field(e, hide=hide) or whole, "message": error_reason(e)}
        for e in errors[:MAX_LISTED_ERRORS]
    ]
    field, reason = listed[0]["field"], listed[0]["message"]
    return InvalidInput(f"{field}: {reason}", field=field, errors=listed)


def invalid_field(field: str, reason: str) -> InvalidInput:
    """One bad field worded as :func:`invalid_errors` words a pydantic error:
    ``field: reason`` naming ``field``, with ``detail.errors`` listing it.

    For a check no pydantic model can make (an unknown registry version, a metric keel
    does not compute), so that a client reading ``detail.errors`` finds every refusal of
    an input there, not only the schema's.
    """
    return InvalidInput(
        f"{field}: {reason}", field=field, errors=[{"field": field, "message": reason}]
    )


#: INTEGER columns (version numbers, record ids) hold 32 bits on PostgreSQL (64 on SQLite);
#: a larger number is refused before the query, naming its field, instead of by the driver.
MAX_INT32 = 2**31 - 1
#: BIGINT columns (times in ms, metric steps, seeds, sizes).
MAX_INT64 = 2**63 - 1
#: The largest version number of a model or dataset.
MAX_VERSION = MAX_INT32


def stored_int(value: object, field: str, *, low: int = 1, high: int = MAX_INT32) -> int:
    """``value`` as an int if it is an integer in ``low..high``, else :func:`invalid_field`.

    The one check of a number a caller names a stored record by (a version, a decision id)
    that every service applies before querying: both SDK transports and every route pass
    through it, and a number no column can hold is a 422 naming ``field`` on SQLite and
    PostgreSQL alike (not the driver's out-of-range error, a 500).
    """
    # worded as pydantic words a Field(ge=, le=) bound, which the routes declare in the
    # OpenAPI document: the embedded SDK and HTTP refuse a number with one message
    if isinstance(value, bool) or not isinstance(value, int | Integral):
        raise invalid_field(field, "Input should be a valid integer")
    number = int(value)
    if number < low:
        raise invalid_field(field, f"Input should be greater than or equal to {low}")
    if number > high:
        raise invalid_field(field, f"Input should be less than or equal to {high}")
    return number


def error_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as keel names a field: ``arms[1].weight`` ("" for none)."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def error_field(error: ErrorDetails, *, hide: Collection[str] = ()) -> str:
    """The field one pydantic error is about, as keel names it ("" for the whole input).

    An InvalidInput that a validator raised names a field of the model that raised it
    (``version`` of ``arms[1]``): the two are joined (``arms[1].version``). A field's own
    validator naming that field (``since`` at ``since``) is not named twice.
    """
    path = error_path([p for p in error["loc"] if p not in hide])
    cause = _own_error(error)
    if cause is not None and cause.field and path.rsplit(".", 1)[-1] != cause.field:
        inner = cause.field if cause.field.startswith("[") else f".{cause.field}"
        path = f"{path}{inner}".lstrip(".")
    return path


def error_reason(error: ErrorDetails) -> str:
    """Why one pydantic error failed, in keel's words (``unknown key 'x'``).

    The one place that words an unknown key (pydantic's "Extra inputs are not permitted"
    names no key), a value outside a ``Literal`` (pydantic's message names the choices,
    not what was given) and a validator's own InvalidInput (its message without the
    field it may start with, as :func:`error_field` names that field).
    """
    if error["type"] == "extra_forbidden" and error["loc"]:
        return f"unknown key {str(error['loc'][-1])!r}"
    if error["type"] == "literal_error":
        return f"{error['msg']}, got {error.get('input')!r}"
    cause = _own_error(error)
    if cause is not None:
        return cause.message.removeprefix(f"{cause.field}: ") if cause.field else cause.message
    return str(error["msg"]).removeprefix("Value error, ")


def _own_error(error: ErrorDetails) -> InvalidInput | None:
    """The InvalidInput a validator raised for this error, if it raised one."""
    cause = (error.get("ctx") or {}).get("error")
    return cause if isinstance(cause, InvalidInput) else None


class Entity(BaseModel):
    """Base of keel's domain entities: strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class Page(BaseModel, Generic[T]):
    """One page of results; pass ``next_token`` back to get the next page."""

    model_config = ConfigDict(extra="forbid")

    items: list[T]
    next_token: str | None = None

    def __iter__(self) -> Any:  # iterate over the items, not the fields
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def encode_page_token(offset: int) -> str:
    """Opaque token for the page starting at ``offset``."""
    import base64

    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_page_token(token: str | None) -> int:
    """Offset encoded in a page token; a forged or garbled token raises InvalidInput."""
    import base64
    import binascii

    from keel.errors import InvalidInput

    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if not text.startswith("o:"):
            raise ValueError(text)
        offset = int(text[2:])
        if offset < 0:
            raise ValueError(offset)
        return offset
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("invalid page token", field="page_token") from exc
