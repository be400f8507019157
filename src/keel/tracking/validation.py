"""Checks on names, keys and values shared by the tracking and registry services."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from keel._models import MAX_INT64
from keel.errors import Conflict, InvalidInput
from keel.tracking.models import Metric

__all__ = [
    "INT64_MAX",
    "MAX_PARAM_VALUE",
    "MAX_TAG_VALUE",
    "check_artifacts_open",
    "check_key",
    "check_name",
    "check_metric_value",
    "param_value",
    "parse_metric",
]

MAX_KEY = 250
MAX_NAME = 256
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_KEY = re.compile(r"^[\w\-. /:]+$")
_NAME = re.compile(r"^[^\x00-\x1f/\\@]+$")


def check_key(key: object, field: str) -> str:
    """A metric/param/tag key: 1-250 word characters, '-', '.', ' ', '/', ':'."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not _KEY.match(key):
        raise InvalidInput(
            f"{field} key {key!r} is invalid: use 1-{MAX_KEY} letters, digits, '_-. /:'",
            field=field,
            value=str(key)[:300],
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise InvalidInput(
            f"{field} key {key!r} may not start with '/' or contain '..'", field=field
        )
    return key


def check_name(name: object, field: str = "name") -> str:
    """An experiment / model / dataset name: 1-256 chars without control chars, '/', '\\', '@'."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_NAME
        or not _NAME.match(name)
    ):
        raise InvalidInput(
            f"{field} {name!r} is invalid: 1-{MAX_NAME} characters, no '/', '\\', '@' or "
            "control characters",
            field=field,
        )
    if name != name.strip():
        raise InvalidInput(f"{field} {name!r} has leading or trailing spaces", field=field)
    return name


#: Bounds of the database's 64-bit integer columns (steps and timestamps).
INT64_MAX = MAX_INT64
_METRIC_FIELDS = ("key", "value", "step", "timestamp_ms")
#: How a JSON document spells NaN and the infinities (JSON has no literal for them).
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _kind(value: object) -> str:
    """A JSON reader's name for the type of ``value`` (``null``, not ``NoneType``)."""
    if value is None:
        return "null"
    names: dict[type, str] = {dict: "object", list: "array", str: "string"}
    return names.get(type(value), type(value).__name__)


def check_metric_value(key: str, value: object, field: str = "value") -> float:
    """A metric value as float: a number (NaN and ±inf allowed), numpy's included, or one of
    the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; booleans and other strings are not.
    Errors name ``field``."""
    if isinstance(value, str) and value in _FLOAT_WORDS:
        return _FLOAT_WORDS[value]
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            raise InvalidInput(
                f"metric {key!r} value is out of range", field=field, value=str(value)[:40]
            ) from None
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        kind = value.dtype.kind  # numpy scalars: floats and integers, not numpy.bool_
        if kind in "fiu":
            return float(value)  # type: ignore[arg-type]
    raise InvalidInput(
        f'metric {key!r} value must be a number (or "NaN", "Infinity", "-Infinity"), '
        f"got {_kind(value)}",
        field=field,
    )


def _metric_int(key: str, value: object, low: int, field: str) -> int:
    """An integer field of a metric (``step``, ``timestamp_ms``) within ``low..INT64_MAX``."""
    name = field.rpartition(".")[2]
    number: int | None = None
    if not isinstance(value, bool) and isinstance(value, int):
        number = value
    elif type(value).__module__ == "numpy" and getattr(value, "dtype", None) is not None:
        if value.dtype.kind in "iu":  # type: ignore[attr-defined]
            number = int(value)  # type: ignore[call-overload]
    if number is None:
        raise InvalidInput(
            f"metric {key!r} {name} must be an integer, got {_kind(value)}", field=field
        )
    if not low <= number <= INT64_MAX:
        raise InvalidInput(
            f"metric {key!r} {name} must be in {low}..{INT64_MAX}",
            field=field,
            value=str(number)[:40],
        )
    return number


def parse_metric(raw: object, at: str = "") -> Metric:
    """The one check of a metric, whatever brought it (SDK, embedded service, REST, fast lane).

    ``raw`` is a mapping ``{key, value, step?, timestamp_ms?}`` (a JSON object as parsed)
    or a :class:`Metric`; ``step`` defaults to 0 and ``timestamp_ms`` to the time of
    logging when absent or null. Raises :class:`InvalidInput` naming the field after
    ``at`` (``value``, or ``metrics.3.value`` for the fourth of a batch with
    ``at="metrics.3."``) and the reason; issue #15 item 9.
    """
    if isinstance(raw, Metric):
        raw = {
            "key": raw.key,
            "value": raw.value,
            "step": raw.step,
            "timestamp_ms": raw.timestamp_ms,
        }
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            f"a metric must be an object {{key, value, step?, timestamp_ms?}}, got {_kind(raw)}",
            field=at.rstrip(".") or "body",
        )
    unknown = sorted(str(name)[:100] for name in raw if name not in _METRIC_FIELDS)
    if unknown:
        raise InvalidInput(
            f"a metric has no field {unknown[0]!r} (fields: {', '.join(_METRIC_FIELDS)})",
            field=at + unknown[0],
        )
    try:
        key = check_key(raw.get("key"), "metric")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=at + "key") from None
    if "value" not in raw:
        raise InvalidInput(f"metric {key!r} needs a value", field=at + "value")
    value = check_metric_value(key, raw["value"], at + "value")
    step, stamp = raw.get("step"), raw.get("timestamp_ms")
    return Metric.model_construct(  # every field checked above
        key=key,
        value=value,
        step=0 if step is None else _metric_int(key, step, -INT64_MAX, at + "step"),
        timestamp_ms=None if stamp is None else _metric_int(key, stamp, 0, at + "timestamp_ms"),
    )


def check_artifacts_open(run_id: str, status: str) -> None:
    """Raise :class:`Conflict` (409) when a run with ``status`` has ended.

    The files of an ended run are what versions are registered from: nobody may add or
    swap one afterwards (issue #15 item 5).
    """
    if status != "RUNNING":
        raise Conflict(
            f"run {run_id} is {status}: the artifacts of an ended run cannot change; "
            "log them to a new run",
            field="run_id",
            status=status,
        )


def param_value(key: str, value: object) -> str:
    """A param value as text (at most 6000 characters)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE:
        raise InvalidInput(
            f"param {key!r} is {len(text)} characters; at most {MAX_PARAM_VALUE}",
            field=f"params.{key}",
        )
    return text
