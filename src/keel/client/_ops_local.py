"""Embedded half of :class:`~keel.client._transport_ops.OpsTransport` (mixed into
:class:`~keel.client._local.LocalTransport`): the services of this process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.auth.models import (
        AuditEntry,
        AuditQuery,
        CreatedToken,
        Token,
        TokenCreate,
        User,
        UserCreate,
    )
    from keel.features.models import Freshness, StoredDefinition, UnusedFeature
    from keel.monitoring.logreads import LogKind, LogPage, LogQuery
    from keel.services import Services

__all__ = ["LocalOps"]


class LocalOps:
    """Admin, cache, log and feature-inspection calls on the in-process services."""

    services: Services
    user: str | None

    @property
    def _actor(self) -> str:
        # Whoever can open the database is trusted with everything; the audit log says who.
        return f"local:{self.user or 'unknown'}"

    # ---- users, tokens, audit ------------------------------------------------------------
    def create_user(self, body: UserCreate) -> User:
        auth = self.services.auth
        return auth.create_user(body.name, body.role, teams=body.teams, created_by=self._actor)

    def list_users(self) -> list[User]:
        return self.services.auth.list_users()

    def set_user_active(self, name: str, active: bool) -> User:
        return self.services.auth.set_active(name, active, actor=self._actor)

    def create_token(self, user: str, body: TokenCreate) -> CreatedToken:
        return self.services.auth.create_token(
            user, name=body.name, expires_in_days=body.expires_in_days, created_by=self._actor
        )

    def list_tokens(self, user: str | None) -> list[Token]:
        return self.services.auth.list_tokens(user)

    def revoke_token(self, token_id: str) -> Token:
        return self.services.auth.revoke_token(token_id, actor=self._actor)

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        return self.services.auth.audit(query)

    # ---- prediction cache --------------------------------------------------------------------
    def invalidate_cache(self, body: dict[str, Any]) -> dict[str, Any]:
        # The cache lives in the gateways: tell every replica over Redis when it is
        # configured, else ask the server of this configuration (KEEL_HOST:KEEL_PORT).
        settings = self.services.settings
        if settings.redis_url:
            from keel.serving.events import publish_invalidation

            dropped = publish_invalidation(
                settings.redis_url,
                model=body["model"],
                version=body["version"],
                entity=body["entity"],
                everything=body["all"],
            )
            return {"via": "redis", "dropped": dropped}
        from keel.client._http import HttpTransport
        from keel.errors import Unavailable

        local = f"http://{settings.host}:{settings.port}"
        transport = HttpTransport(
            local, token=None, timeout_s=30, cache_dir=settings.resolved_model_cache_dir
        )
        try:
            return transport.invalidate_cache(body)
        except Unavailable as exc:
            raise Unavailable(
                f"{exc}. The in-process cache lives in the server: pass --server, or set "
                "KEEL_REDIS_URL to publish to every replica.",
                field="server",
            ) from None
        finally:
            transport.close()

    # ---- prediction log and labels ----------------------------------------------------------
    def log_page(self, kind: LogKind, query: LogQuery) -> LogPage:
        from keel.monitoring.logreads import json_rows

        cap = query.json_limit()
        return json_rows(self._read(kind, query, cap + 1), cap)

    def log_table(self, kind: LogKind, query: LogQuery) -> pa.Table:
        return self._read(kind, query, None)

    def _read(self, kind: LogKind, query: LogQuery, limit: int | None) -> pa.Table:
        from keel.monitoring.logreads import read_labels, read_predictions

        feedback = self.services.feedback
        if kind == "labels":
            return read_labels(query, feedback, limit)
        return read_predictions(query, feedback.predictions_root, limit)

    # ---- feature-store inspection --------------------------------------------------------------
    def feature_history(self, name: str) -> list[StoredDefinition]:
        return self.services.features.history(name)

    def feature_dependents(self, name: str) -> list[str]:
        return self.services.features.dependent_models(name)

    def feature_freshness(self, views: list[str] | None) -> list[Freshness]:
        return self.services.features.freshness(views)

    def unused_features(self, days: int | None) -> list[UnusedFeature]:
        return self.services.features.unused_features(days=days)

    def feature_skew(
        self,
        offline: pd.DataFrame,
        served: pd.DataFrame | None,
        served_from: dict[str, Any] | None,
        features: list[str] | None,
        thresholds: dict[str, float | None],
    ) -> dict[str, Any]:
        store = self.services.features
        right: Any = served
        if right is None:
            source = served_from or {}
            right = store.served_features(
                source["model"], source.get("version"), source.get("start"), source.get("end")
            )
        report = store.check_skew(offline, right, features, **thresholds)
        return report.to_dict()
