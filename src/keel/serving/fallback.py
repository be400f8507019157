"""Fallbacks used while a model version's circuit breaker is open.

Configured per model in ``KEEL_SERVING_FALLBACKS`` (a JSON object):

- ``"previous"``: the newest earlier version of the model that is not archived;
- ``"constant:<json>"``: that value as every prediction, e.g. ``"constant:0"`` or
  ``"constant:\\"no-churn\\""``.

>>> parse_fallbacks({"churn": "constant:0", "fraud": "previous"})["churn"]
Fallback(previous=False, value=0)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidInput
from keel.registry.models import ModelStatus
from keel.registry.service import RegistryService

__all__ = ["Fallback", "parse_fallbacks", "previous_version"]


@dataclass(frozen=True, slots=True)
class Fallback:
    """Either the previous version or a constant prediction."""

    previous: bool
    value: Any = None


def parse_fallbacks(config: Mapping[str, str]) -> dict[str, Fallback]:
    """Check the configured fallbacks; raises InvalidInput naming the model."""
    parsed: dict[str, Fallback] = {}
    for model, spec in config.items():
        if spec == "previous":
            parsed[model] = Fallback(previous=True)
        elif isinstance(spec, str) and spec.startswith("constant:"):
            try:
                parsed[model] = Fallback(previous=False, value=json.loads(spec[9:]))
            except ValueError as exc:
                raise InvalidInput(
                    f"fallback of {model!r}: {spec[9:]!r} is not JSON", field="serving_fallbacks"
                ) from exc
        else:
            raise InvalidInput(
                f"fallback of {model!r} must be 'previous' or 'constant:<json>', got {spec!r}",
                field="serving_fallbacks",
            )
    return parsed


async def previous_version(
    registry: RegistryService, name: str, version: int, memo: dict[tuple[str, int], int | None]
) -> int | None:
    """The newest version of ``name`` below ``version`` that is not archived (memoised)."""
    key = (name, version)
    if key not in memo:
        versions = await asyncio.to_thread(registry.list_versions, name)
        earlier = [
            v.version
            for v in versions
            if v.version < version and v.status is not ModelStatus.ARCHIVED
        ]
        memo[key] = max(earlier) if earlier else None
    return memo[key]
