"""Authentication use cases: users, API tokens, verification, and the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from keel._models import now_ms
from keel.auth.audit import AuditWriter
from keel.auth.guard import VerificationGuard
from keel.auth.models import AuditEntry, AuditQuery, CreatedToken, Principal, Role, Token, User
from keel.auth.tokens import VerifiedCache, hash_secret, new_token, split_token, verify
from keel.errors import Conflict, InvalidInput, Unauthorized
from keel.store.sql.auth import AuthSql
from keel.tracking.validation import check_name

__all__ = ["AuthService"]

_DAY_MS = 86_400_000


class AuthService:
    """Users and tokens over :class:`AuthSql`; ``enabled`` mirrors ``KEEL_AUTH=on``.

    Successful token checks are cached in this process for ``cache_ttl_s``
    seconds (argon2 costs tens of milliseconds). Revoking a token or disabling
    a user drops the cache here at once; other processes notice within the TTL.
    """

    def __init__(
        self,
        store: AuthSql,
        *,
        enabled: bool,
        cache_ttl_s: float = 30.0,
        guard: VerificationGuard | None = None,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.cache = VerifiedCache(cache_ttl_s)
        self.guard = guard or VerificationGuard()
        self.audit_writer = AuditWriter(store.append_audit)

    # ---- users ------------------------------------------------------------------
    def create_user(
        self,
        name: str,
        role: Role | str = Role.VIEWER,
        *,
        teams: Sequence[str] = (),
        created_by: str | None = None,
    ) -> User:
        """Create a user (no password: users authenticate with API tokens)."""
        user = User(
            id=uuid.uuid4().hex,
            name=check_name(name, "name"),
            role=_role(role),
            teams=[check_name(t, "teams") for t in teams],
            created_by=created_by,
            created_at_ms=now_ms(),
        )
        return self.store.create_user(user)

    def create_admin(self, name: str, *, token_days: int | None = None) -> CreatedToken:
        """Bootstrap: the first admin and its token (Conflict once an admin exists)."""
        if self.store.count_active_admins() > 0:
            raise Conflict(
                "an admin already exists; an admin creates more users with "
                "`keel users create NAME --role admin`",
                field="name",
            )
        self.create_user(name, Role.ADMIN, created_by="bootstrap")
        return self.create_token(
            name, name="bootstrap", expires_in_days=token_days, created_by="bootstrap"
        )

    def get_user(self, name: str) -> User:
        """A user by name; raises NotFound."""
        return self.store.get_user(name)

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return self.store.list_users()

    def set_active(self, name: str, active: bool, *, actor: str | None = None) -> User:
        """Disable (or re-enable) a user; a disabled user's tokens stop working."""
        return self.update_user(name, is_active=active, actor=actor)

    def update_user(
        self,
        name: str,
        *,
        is_active: bool | None = None,
        role: Role | str | None = None,
        teams: Sequence[str] | None = None,
        actor: str | None = None,
    ) -> User:
        """Change a user's state, role or teams; the last active admin cannot be demoted."""
        user = self.store.get_user(name)
        changes: dict[str, object] = {}
        if is_active is not None:
            changes["is_active"] = is_active
        if role is not None:
            changes["role"] = _role(role).value
        if teams is not None:
            changes["teams"] = [check_name(t, "teams") for t in teams]
        if not changes:
            return user
        stays_admin = changes.get("role", user.role.value) == Role.ADMIN.value and changes.get(
            "is_active", user.is_active
        )
        if user.role is Role.ADMIN and user.is_active and not stays_admin:
            if self.store.count_active_admins() <= 1:
                raise Conflict(f"{name!r} is the last active admin", field="name")
        updated = self.store.update_user(name, changes, actor)
        self.cache.drop(user=name)
        return updated

    def has_admin(self) -> bool:
        """True when at least one active admin exists (needed to serve remotely)."""
        return self.store.count_active_admins() > 0

    # ---- tokens -----------------------------------------------------------------
    def create_token(
        self,
        user: str,
        *,
        name: str | None = None,
        expires_in_days: int | None = None,
        created_by: str | None = None,
    ) -> CreatedToken:
        """A new token for ``user``; the returned ``token`` is the only copy of the secret."""
        if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
            raise InvalidInput("expires_in_days must be in 1..3650", field="expires_in_days")
        if name is not None:
            check_name(name, "name")
        owner = self.store.get_user(user)
        if not owner.is_active:
            raise Conflict(f"user {user!r} is disabled", field="user")
        token, token_id, secret = new_token()
        created = now_ms()
        record = Token(
            id=token_id,
            user=user,
            name=name,
            created_by=created_by,
            created_at_ms=created,
            expires_at_ms=created + expires_in_days * _DAY_MS if expires_in_days else None,
        )
        self.store.create_token(record, hash_secret(secret))
        return CreatedToken(**record.model_dump(), token=token)

    def list_tokens(self, user: str | None = None) -> list[Token]:
        """Tokens (of one user); never their secrets."""
        return self.store.list_tokens(user)

    def revoke_token(self, token_id: str, *, actor: str | None = None) -> Token:
        """Revoke a token: at once in this process, within the cache TTL elsewhere."""
        token = self.store.revoke_token(token_id, actor)
        self.cache.drop(token_id=token_id)
        return token

    def cached_principal(self, token: str) -> Principal | None:
        """The principal of a recently verified token (microseconds), else None."""
        return self.cache.get(self.cache.key(token))

    def authenticate(self, token: str, client: str | None = None) -> Principal:
        """Check a bearer token; raises :class:`Unauthorized` saying why it fails.

        ``client`` (the caller's address) has its own failure budget. Failures are
        throttled before any hashing (:class:`RateLimited`) and argon2 checks run a few
        at a time (:class:`Unavailable` when none frees up): see :mod:`keel.auth.guard`.
        """
        key = self.cache.key(token)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        parts = split_token(token)
        if parts is None:
            raise Unauthorized("malformed API token (expected keel_<id>_<secret>)")
        self.guard.admit(key, parts[0], client)
        found = self.store.find_token(parts[0])
        if found is None:
            self.guard.failed(key, None, client)
            raise Unauthorized("invalid API token")
        matches = self.guard.run(verify, found[1], parts[1])
        if not matches:
            self.guard.failed(key, parts[0], client)
            raise Unauthorized("invalid API token")
        self.guard.succeeded(key, parts[0])
        record, _, user = found
        now = now_ms()
        if record.revoked_at_ms is not None:
            raise Unauthorized("API token revoked")
        if record.expires_at_ms is not None and record.expires_at_ms <= now:
            raise Unauthorized("API token expired")
        if not user.is_active:
            raise Unauthorized(f"user {user.name!r} is disabled")
        principal = Principal(name=user.name, role=user.role, teams=user.teams, token_id=record.id)
        left = None if record.expires_at_ms is None else (record.expires_at_ms - now) / 1000
        self.cache.put(key, principal, left)
        return principal

    # ---- audit ------------------------------------------------------------------
    def record(self, entry: AuditEntry) -> None:
        """Queue an audit entry; it is committed with the next batch (see keel.auth.audit)."""
        self.audit_writer.submit(entry)

    def audit(self, query: AuditQuery | None = None) -> list[AuditEntry]:
        """Audit entries, newest first (entries queued in this process included)."""
        self.audit_writer.flush()
        return self.store.query_audit(query or AuditQuery())

    def close(self) -> None:
        """Commit queued audit entries and stop the writer and verification threads."""
        self.audit_writer.close()
        self.guard.close()


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"role {value!r} is not one of {roles}", field="role") from None
