"""Checks on names, keys and values shared by the tracking and registry services."""

from __future__ import annotations

import re

from keel.errors import Conflict, InvalidInput

__all__ = [
    "MAX_PARAM_VALUE",
    "MAX_TAG_VALUE",
    "check_artifacts_open",
    "check_key",
    "check_name",
    "check_metric_value",
    "param_value",
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


def check_metric_value(key: str, value: object) -> float:
    """A metric value as float (NaN and ±inf allowed; bools and strings are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity"):
                return float(value)
            import numpy as np

            if isinstance(value, np.floating | np.integer):
                return float(value)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        raise InvalidInput(
            f"metric {key!r} must be a number, got {type(value).__name__}", field=f"metrics.{key}"
        )
    return float(value)


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
