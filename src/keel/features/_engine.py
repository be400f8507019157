"""Which engine runs point-in-time lookups: in this process, or as Ray tasks.

The default comes from ``Settings.features_engine`` (``KEEL_FEATURES_ENGINE``).
"""

from __future__ import annotations

from typing import Literal

from keel.errors import InvalidInput

__all__ = ["ENGINES", "RetrievalEngine", "engine_from"]

RetrievalEngine = Literal["local", "ray"]
ENGINES: tuple[RetrievalEngine, ...] = ("local", "ray")


def engine_from(value: str | None, default: str = "local") -> RetrievalEngine:
    """``value``, else ``default`` (the configured engine); anything else is refused."""
    chosen = value or default
    if chosen not in ENGINES:
        raise InvalidInput(
            f"unknown retrieval engine {chosen!r}: use one of {', '.join(ENGINES)}",
            field="engine",
        )
    return chosen  # narrowed to RetrievalEngine by the check above
