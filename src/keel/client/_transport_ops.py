"""Transport operations behind the CLI's admin, cache, prediction-log and feature commands.

Part of :class:`~keel.client._transport.Transport` (which inherits this), kept in its own
file so the CLI-through-the-SDK work (#15.26) does not grow the shared transport files:
``_ops_local.py`` and ``_ops_http.py`` implement it. Every argument arrives validated by
the SDK (the API's own schemas), so both transports see the same checked values.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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

__all__ = ["OpsTransport"]


class OpsTransport(ABC):
    """Users, tokens, audit, cache, prediction-log reads and feature-store inspection."""

    # ---- users, tokens, audit ------------------------------------------------------------
    @abstractmethod
    def create_user(self, body: UserCreate) -> User: ...

    @abstractmethod
    def list_users(self) -> list[User]: ...

    @abstractmethod
    def set_user_active(self, name: str, active: bool) -> User: ...

    @abstractmethod
    def create_token(self, user: str, body: TokenCreate) -> CreatedToken: ...

    @abstractmethod
    def list_tokens(self, user: str | None) -> list[Token]: ...

    @abstractmethod
    def revoke_token(self, token_id: str) -> Token: ...

    @abstractmethod
    def audit(self, query: AuditQuery) -> list[AuditEntry]: ...

    # ---- prediction cache --------------------------------------------------------------------
    @abstractmethod
    def invalidate_cache(self, body: dict[str, Any]) -> dict[str, Any]:
        """Drop cache entries (``model``, ``version``, ``entity``, ``all``).

        Returns ``{"dropped": n, "via": where}``.
        """

    # ---- prediction log and labels ----------------------------------------------------------
    @abstractmethod
    def log_page(self, kind: LogKind, query: LogQuery) -> LogPage:
        """At most ``query.json_limit()`` newest rows as JSON-ready dicts."""

    @abstractmethod
    def log_table(self, kind: LogKind, query: LogQuery) -> pa.Table:
        """Every matching row (or the newest ``query.limit``) as an Arrow table."""

    # ---- feature-store inspection --------------------------------------------------------------
    @abstractmethod
    def feature_history(self, name: str) -> list[StoredDefinition]: ...

    @abstractmethod
    def feature_dependents(self, name: str) -> list[str]: ...

    @abstractmethod
    def feature_freshness(self, views: list[str] | None) -> list[Freshness]: ...

    @abstractmethod
    def unused_features(self, days: int | None) -> list[UnusedFeature]: ...

    @abstractmethod
    def feature_skew(
        self,
        offline: pd.DataFrame,
        served: pd.DataFrame | None,
        served_from: dict[str, Any] | None,
        features: list[str] | None,
        thresholds: dict[str, float | None],
    ) -> dict[str, Any]:
        """The skew report's ``to_dict()`` form."""
