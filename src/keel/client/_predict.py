"""Predictions half of :class:`keel.Client`: a model reference or a deployment, on both
transports (over HTTP the server's gateway answers; embedded, a gateway in this process)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

    from keel.client._transport import Transport
    from keel.serving.interface import Target

__all__ = ["PredictMixin", "predict_target"]


def predict_target(ref: str) -> Target:
    """``models:/name@alias`` or ``models:/name/3`` → that model; anything else names a
    deployment. Raises InvalidInput naming ``ref`` for an empty or malformed reference."""
    from keel.registry.uri import parse_model_ref
    from keel.serving.interface import Target

    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("name a deployment or a models:/ reference", field="ref")
    if not ref.startswith("models:/"):
        return Target(ref, deployment=True)
    parsed = parse_model_ref(ref)
    if parsed.alias is None and parsed.version is None:
        raise InvalidInput(
            f"{ref!r}: name a version or an alias (models:/name/3, models:/name@champion)",
            field="ref",
        )
    return Target(parsed.name, version=parsed.version, alias=parsed.alias)


class PredictMixin:
    """``Client.predict``; mixed into :class:`keel.Client`."""

    transport: Transport

    def predict(
        self,
        ref: str,
        instances: Sequence[dict[str, Any]] | pd.DataFrame,
        *,
        routing_key: str | None = None,
        probabilities: bool = False,
        event_time: dt.datetime | str | int | None = None,
    ) -> dict[str, Any]:
        """Predict ``instances`` with a deployment (its name) or a model version
        (``models:/churn@champion``, ``models:/churn/3``), as the gateway does.

        Returns the response body: ``predictions``, ``version``, ``cached``, ``request_id``
        (plus ``probabilities`` when asked; ``deployment`` and ``arm`` for a deployment).
        ``routing_key`` keeps a user on one arm of a deployment (sticky); it is refused
        for a model reference. Raises the gateway's errors (InvalidInput naming the
        field, NotFound, Unavailable, …) on both transports.

        ``event_time`` (a datetime, naive = UTC; an ISO-8601 string; epoch milliseconds)
        logs the prediction at that time instead of now, for replays and backfills: the
        monitoring windows then count it where it happened. The gateway refuses a time
        more than 5 minutes ahead of its clock (422 naming ``event_time``).
        """
        import json

        target = predict_target(ref)
        if routing_key is not None and not target.deployment:
            raise InvalidInput(
                "routing_key chooses a deployment's arm; a models:/ reference has none",
                field="routing_key",
            )
        to_json = getattr(instances, "to_json", None)
        if callable(to_json):  # a DataFrame: JSON-ready records (NaN → null, numpy → JSON)
            instances = json.loads(to_json(orient="records"))
        body: dict[str, Any] = {"instances": list(instances)}
        if probabilities:
            body["probabilities"] = True
        if routing_key is not None:
            body["routing_key"] = routing_key
        if event_time is not None:
            if isinstance(event_time, dt.datetime):
                body["event_time"] = event_time.isoformat()
            else:
                body["event_time"] = event_time
        return self.transport.predict(target, json.dumps(body).encode())
