"""HTTP half of :class:`~keel.client._transport_ops.OpsTransport` (mixed into
:class:`~keel.client._http.HttpTransport`): the admin, cache, log and feature routes."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keel.auth.models import AuditEntry, AuditQuery, CreatedToken, Token, TokenCreate, User
from keel.client._http_base import HttpBase, q

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.auth.models import UserCreate
    from keel.features.models import Freshness, StoredDefinition, UnusedFeature
    from keel.monitoring.logreads import LogKind, LogPage, LogQuery

__all__ = ["HttpOps"]

_LOG_ROUTES = {"predictions": "/v1/predictions", "labels": "/v1/feedback"}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    # ISO times at µs, NaN as null: the same encoding as push_features.
    records: list[dict[str, Any]] = jsonlib.loads(
        frame.to_json(orient="records", date_format="iso", date_unit="us")
    )
    return records


class HttpOps(HttpBase):
    """Admin, cache, log and feature-inspection calls over the REST API."""

    # ---- users, tokens, audit ------------------------------------------------------------
    def create_user(self, body: UserCreate) -> User:
        return self._call("POST", "/v1/users", User, json=body.model_dump(mode="json"))

    def list_users(self) -> list[User]:
        return self._call_list("GET", "/v1/users", User)

    def set_user_active(self, name: str, active: bool) -> User:
        return self._call("PATCH", f"/v1/users/{q(name)}", User, json={"is_active": active})

    def create_token(self, user: str, body: TokenCreate) -> CreatedToken:
        url = f"/v1/users/{q(user)}/tokens"
        return self._call("POST", url, CreatedToken, json=body.model_dump(mode="json"))

    def list_tokens(self, user: str | None) -> list[Token]:
        url = f"/v1/users/{q(user)}/tokens" if user else "/v1/tokens"
        return self._call_list("GET", url, Token)

    def revoke_token(self, token_id: str) -> Token:
        return self._call("DELETE", f"/v1/tokens/{q(token_id)}", Token)

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        params = query.model_dump(exclude_none=True)
        return self._call_list("GET", "/v1/audit", AuditEntry, params=params)

    # ---- prediction cache --------------------------------------------------------------------
    def invalidate_cache(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._request("POST", "/v1/cache/invalidate", json=body).json()
        return {"via": self.base_url, "dropped": answer.get("dropped")}

    # ---- prediction log and labels ----------------------------------------------------------
    @staticmethod
    def _log_params(query: LogQuery, **extra: Any) -> Mapping[str, Any]:
        return {**query.model_dump(exclude_none=True), **extra}

    def log_page(self, kind: LogKind, query: LogQuery) -> LogPage:
        from keel.monitoring.logreads import LogPage

        params = self._log_params(query, format="json")
        return self._call("GET", _LOG_ROUTES[kind], LogPage, params=params)

    def log_table(self, kind: LogKind, query: LogQuery) -> pa.Table:
        from keel.features.wire import ARROW_STREAM, read_table

        params = self._log_params(query, format="arrow")
        headers = {"accept": ARROW_STREAM}
        response = self._request("GET", _LOG_ROUTES[kind], params=params, headers=headers)
        return read_table(response.content, ARROW_STREAM)

    # ---- feature-store inspection --------------------------------------------------------------
    def feature_history(self, name: str) -> list[StoredDefinition]:
        from keel.features.models import StoredDefinition

        url = f"/v1/features/definitions/{q(name)}"
        return self._call_list("GET", url, StoredDefinition)

    def feature_dependents(self, name: str) -> list[str]:
        url = f"/v1/features/definitions/{q(name)}/models"
        return [str(m) for m in self._request("GET", url).json()]

    def feature_freshness(self, views: list[str] | None) -> list[Freshness]:
        from keel.features.models import Freshness

        params = {"view": views} if views else None
        return self._call_list("GET", "/v1/features/freshness", Freshness, params=params)

    def unused_features(self, days: int | None) -> list[UnusedFeature]:
        from keel.features.models import UnusedFeature

        params = {"days": days} if days is not None else None
        return self._call_list("GET", "/v1/features/deprecated", UnusedFeature, params=params)

    def feature_skew(
        self,
        offline: pd.DataFrame,
        served: pd.DataFrame | None,
        served_from: dict[str, Any] | None,
        features: list[str] | None,
        thresholds: dict[str, float | None],
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "offline": _records(offline),
            "served": None if served is None else _records(served),
            "served_from": served_from,
            "features": features,
            **thresholds,
        }
        result: dict[str, Any] = self._request("POST", "/v1/features/skew", json=body).json()
        return result
