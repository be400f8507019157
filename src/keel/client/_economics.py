"""Economics half of :class:`keel.Client`: a model's retraining interval from its history.

Both transports without new transport methods: embedded, the transport's services run
:func:`keel.automation.model_economics.model_economics`; over HTTP,
``GET /v1/models/{name}/economics`` does. Both answer the same plain dict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["EconomicsMixin"]


class EconomicsMixin:
    """``model_economics``; mixed into :class:`keel.Client`."""

    transport: Transport

    def model_economics(
        self,
        name: str,
        *,
        retrain_cost: float,
        value_per_point: float,
        queries_per_day: float | None = None,
        manual_deploy_days: float | None = None,
        metric: str = "accuracy",
        window: str = "90d",
        bucket: str = "1d",
        min_rows: int = 30,
        change_pct: float = 20.0,
    ) -> dict[str, Any]:
        """λ fitted to ``name``'s served version's performance per day since training, and
        T*, half-life, S(T), sensitivity, automate flag and assumptions beside the model's
        configured schedules (docs/automation.md#retraining-economics-of-a-model).

        NotFound for an unknown model; InvalidInput naming ``history`` when there are
        fewer than three buckets with ``min_rows`` labelled predictions.
        """
        options: dict[str, Any] = {
            "retrain_cost": retrain_cost,
            "value_per_point": value_per_point,
            "queries_per_day": queries_per_day,
            "manual_deploy_days": manual_deploy_days,
            "metric": metric,
            "window": window,
            "bucket": bucket,
            "min_rows": min_rows,
            "change_pct": change_pct,
        }
        services = getattr(self.transport, "services", None)
        if services is not None:
            from keel.automation.model_economics import model_economics

            return model_economics(services, name, **options).to_dict()
        params = {k: v for k, v in options.items() if v is not None}
        url = f"/v1/models/{quote(name, safe='')}/economics"
        result: dict[str, Any] = self.transport._request("GET", url, params=params).json()  # type: ignore[attr-defined]
        return result
