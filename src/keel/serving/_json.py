"""JSON for the hot path: orjson when installed (several times faster), else the stdlib."""

from __future__ import annotations

import json
from typing import Any

from keel.errors import BadRequest

__all__ = ["MAX_DEPTH", "dumps", "loads"]

#: Deepest nesting a request body may have: orjson's own limit (the stdlib parser, used
#: for bodies with NaN tokens, would otherwise stop at Python's recursion limit).
MAX_DEPTH = 1024

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson ships with keel's environments
    _orjson = None  # type: ignore[assignment]


def loads(data: bytes) -> Any:
    """Parse a request body; bare ``NaN`` / ``Infinity`` tokens are accepted (the API allows them).

    Raises BadRequest (400, field ``body``) when the body is not JSON, is not UTF-8 or
    nests deeper than :data:`MAX_DEPTH` (issue 15 item 8: a 100,000-deep body was a 500).
    """
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except _orjson.JSONDecodeError as exc:
            if "depth" in str(exc) or "ecursion" in str(exc):
                raise _too_deep() from exc
            # maybe NaN tokens, which orjson rejects: the standard parser decides
    try:
        return json.loads(data)
    except RecursionError:
        # The stdlib parser recurses once per level; its depth error must not be a 500.
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}", field="body") from exc


def _too_deep() -> BadRequest:
    return BadRequest(
        f"malformed JSON: nested deeper than {MAX_DEPTH} levels", field="body", limit=MAX_DEPTH
    )


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
