"""What the gateway writes to the prediction log for every prediction served."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PredictionRecord", "ServedRequest"]


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
    #: R-TRN-24 (keel.serving.exploration): whether the row was answered with the model's
    #: exploration action (``output`` stays the model's answer) and the probability of the
    #: answer it got; None when the model explores nothing.
    explore: bool | None = None
    propensity: float | None = None


@dataclass(slots=True)
class ServedRequest:
    """One answered request with all its rows: what the gateway hands the prediction log.

    One small object per request, referring to what the request already holds (its
    parsed rows, the outputs), instead of a :class:`PredictionRecord` and a features
    dict per row: on a cache hit building those cost about as much as answering. The
    log's writer thread turns a batch of them into columns (``_segments.served_to_table``);
    :meth:`records` gives the same rows as :class:`PredictionRecord` objects.
    """

    request_id: str
    at_ms: int
    model: str
    version: int
    columns: Sequence[str]  # feature names, in the order of each row's values
    rows: Sequence[tuple[Any, ...]]
    outputs: Sequence[Any]
    probabilities: Sequence[Any] | None  # per row (None where absent), or None
    hits: Sequence[bool]
    fallback: bool
    latency_ms: float
    entity_keys: Sequence[str | None] | None = None
    #: Set on a deployment's requests: the deployment, the arm that answered, and the
    #: ``extra`` JSON text (the route taken; a shadow's error), one object per route.
    deployment: str | None = None
    arm: str | None = None
    extra: str | None = None
    #: Per row when the model has an exploration policy (keel.serving.exploration), else None.
    explore: Sequence[bool] | None = None
    propensity: Sequence[float] | None = None

    def records(self) -> Iterator[PredictionRecord]:
        """One :class:`PredictionRecord` per row."""
        entities, probabilities = self.entity_keys, self.probabilities
        explore, propensity = self.explore, self.propensity
        extra = json.loads(self.extra) if self.extra else {}
        for i, output in enumerate(self.outputs):
            yield PredictionRecord(
                request_id=self.request_id,
                at_ms=self.at_ms,
                model=self.model,
                version=self.version,
                features=dict(zip(self.columns, self.rows[i], strict=True)),
                output=output,
                latency_ms=self.latency_ms,
                cached=self.hits[i],
                fallback=self.fallback,
                deployment=self.deployment,
                arm=self.arm,
                extra=dict(extra),
                entity_key=None if entities is None else entities[i],
                probabilities=None if probabilities is None else probabilities[i],
                explore=None if explore is None else explore[i],
                propensity=None if propensity is None else propensity[i],
            )
