"""What the gateway writes to the prediction log for every prediction served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["PredictionRecord"]


@dataclass(slots=True)
class PredictionRecord:
    """One served prediction (one input row).

    ``features`` is the full input row as seen by the model (request features
    merged with any fetched online features); ``output`` is the prediction and
    ``probabilities`` the class probabilities when the model gives them.
    """

    request_id: str
    at_ms: int
    model: str
    version: int
    features: dict[str, Any]
    output: Any
    latency_ms: float
    cached: bool = False
    fallback: bool = False
    deployment: str | None = None
    arm: str | None = None
    entity_key: str | None = None
    probabilities: list[float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
