"""JSON for the hot path: orjson when installed (several times faster), else the stdlib."""

from __future__ import annotations

import json
from typing import Any

from keel.errors import BadRequest

__all__ = ["dumps", "loads"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson ships with keel's environments
    _orjson = None  # type: ignore[assignment]


def loads(data: bytes) -> Any:
    """Parse a request body; bare ``NaN`` / ``Infinity`` tokens are accepted (the API allows them).

    Raises BadRequest (400, field ``body``) when the body is not JSON.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError:
            pass  # maybe NaN tokens, which orjson rejects: the standard parser decides
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}", field="body") from exc


def dumps(value: Any) -> bytes:
    """Serialise a response; NaN and infinities become ``null`` (JSON has no such numbers)."""
    if _orjson is not None:
        return _orjson.dumps(value, option=_orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(_clean(value)).encode()  # pragma: no cover - only without orjson


def _clean(value: Any) -> Any:  # pragma: no cover - only without orjson
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value
