"""Users, API tokens, the audit log and the prediction cache in :class:`keel.Client`.

The arguments are checked with the admin API's own request schemas
(:mod:`keel.auth.models`) before either transport sees them, so a bad value is the same
``InvalidInput`` naming the field embedded and over HTTP (#15.26).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from keel._models import invalid_input
from keel.auth.models import AuditEntry, AuditQuery, CreatedToken, Role, Token, User

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["OpsMixin"]


def _checked(model: Any, **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise invalid_input(exc) from None


class OpsMixin:
    """Administration methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def create_user(
        self, name: str, role: Role | str = Role.VIEWER, teams: Sequence[str] = ()
    ) -> User:
        """Create a user (give it a token with :meth:`create_token`); admin only over HTTP."""
        from keel.auth.models import UserCreate

        return self.transport.create_user(
            _checked(UserCreate, name=name, role=role, teams=list(teams))
        )

    def list_users(self) -> list[User]:
        """Every user with its role and teams."""
        return self.transport.list_users()

    def set_user_active(self, name: str, active: bool) -> User:
        """Disable (its tokens stop working) or re-enable a user."""
        return self.transport.set_user_active(name, bool(active))

    def create_token(
        self, user: str, *, name: str | None = None, expires_in_days: int | None = None
    ) -> CreatedToken:
        """A new API token for ``user``; ``.token`` is the only copy of the secret."""
        from keel.auth.models import TokenCreate

        body = _checked(TokenCreate, name=name, expires_in_days=expires_in_days)
        return self.transport.create_token(user, body)

    def list_tokens(self, user: str | None = None) -> list[Token]:
        """Tokens (ids, owners, expiry, revocation; never secrets), all or ``user``'s."""
        return self.transport.list_tokens(user)

    def revoke_token(self, token_id: str) -> Token:
        """Revoke a token."""
        return self.transport.revoke_token(token_id)

    def audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: str | int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Audit entries, newest first; ``since`` is an age (``2h``, ``7d``), an ISO time
        or epoch milliseconds."""
        from keel._durations import parse_time

        moment = parse_time(since, "since")
        since_ms = None if moment is None else int(moment.timestamp() * 1000)
        query = _checked(AuditQuery, actor=actor, action=action, since_ms=since_ms, limit=limit)
        return self.transport.audit(query)

    def invalidate_cache(
        self,
        model: str | None = None,
        *,
        version: int | None = None,
        entity: str | None = None,
        everything: bool = False,
    ) -> dict[str, Any]:
        """Drop cached predictions of ``model`` (one ``version`` or ``entity``), or
        ``everything``, on every gateway replica; ``{"dropped": n, "via": ...}``.

        Over HTTP the server drops them and tells its replicas; embedded, keel publishes
        the event to ``KEEL_REDIS_URL``, or asks the server at ``KEEL_HOST:KEEL_PORT``.
        """
        from keel.serving.events import make_invalidation

        make_invalidation(model=model, version=version, entity=entity, everything=everything)
        body = {"model": model, "version": version, "entity": entity, "all": everything}
        return self.transport.invalidate_cache(body)
