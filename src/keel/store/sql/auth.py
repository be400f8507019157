"""Users, API tokens and the append-only audit log in SQL.

Also the hook that writes an audit entry for every alias move *in the same
transaction* as the move, whichever path made it (REST, SDK, CLI), so an alias
can never move without its audit record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event, func, insert, select
from sqlalchemy.orm import Session

from keel._models import now_ms
from keel.auth.models import AuditEntry, AuditQuery, Role, Token, User
from keel.errors import Conflict, NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.tables import AliasEventRow
from keel.store.sql.tables_auth import ApiTokenRow, AuditRow, UserRow

__all__ = ["AuthSql", "RequestAudit", "audit_context"]


@dataclass
class RequestAudit:
    """What the API knows about the request being served, for in-transaction audit rows.

    ``written`` is set when a store write recorded the request's audit entry
    itself, so the API does not append a second one.
    """

    actor: str | None
    method: str
    target: str
    client: str | None
    route_of: Callable[[], str | None] | None = None  # the route template, once routed
    written: bool = False

    @property
    def route(self) -> str | None:
        """The route template (e.g. ``/v1/runs/{run_id}``), None before routing."""
        return self.route_of() if self.route_of is not None else None


#: Set by the API for the duration of one request (propagates into worker threads).
audit_context: ContextVar[RequestAudit | None] = ContextVar("keel_audit_context", default=None)


def _audit_values(
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor: str | None,
) -> dict[str, Any]:
    ctx = audit_context.get()
    if ctx is not None:
        ctx.written = True
    return {
        "at_ms": now_ms(),
        "actor": ctx.actor if ctx is not None else actor,
        "action": action,
        "method": ctx.method if ctx is not None else None,
        "route": ctx.route if ctx is not None else None,
        "target": target,
        "status": 200 if ctx is not None else None,
        "client": ctx.client if ctx is not None else "local",
        "before": before,
        "after": after,
    }


def audit_in_transaction(
    conn: Connection,
    action: str,
    target: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Append an audit entry inside the caller's write transaction (commits with it)."""
    conn.execute(insert(AuditRow), [_audit_values(action, target, before, after, actor)])


@event.listens_for(AliasEventRow, "after_insert")
def _audit_alias_move(_mapper: Any, connection: Connection, row: AliasEventRow) -> None:
    action = "alias.delete" if row.to_version is None else "alias.set"
    audit_in_transaction(
        connection,
        action,
        f"models:/{row.model_name}@{row.alias}",
        before={"version": row.from_version},
        after={"version": row.to_version, "reason": row.reason},
        actor=row.actor,
    )


def _user(row: UserRow) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        teams=list(row.teams or []),
        is_active=row.is_active,
        created_by=row.created_by,
        created_at_ms=row.created_at_ms,
    )


def _token(row: ApiTokenRow, user: str) -> Token:
    return Token(
        id=row.id,
        user=user,
        name=row.name,
        created_by=row.created_by,
        created_at_ms=row.created_at_ms,
        expires_at_ms=row.expires_at_ms,
        revoked_at_ms=row.revoked_at_ms,
    )


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at_ms=row.at_ms,
        actor=row.actor,
        action=row.action,
        method=row.method,
        route=row.route,
        target=row.target,
        status=row.status,
        client=row.client,
        before=row.before,
        after=row.after,
    )


class AuthSql(SqlBase):
    """Persistence of users, tokens and audit entries."""

    # ---- users ------------------------------------------------------------------
    def create_user(self, user: User) -> User:
        """Insert a user (audited in the same transaction); a taken name is a Conflict."""
        with self.write(conflict=f"user {user.name!r} already exists", field="name") as s:
            if s.scalar(select(UserRow.id).where(UserRow.name == user.name)) is not None:
                raise Conflict(f"user {user.name!r} already exists", field="name")
            s.add(
                UserRow(
                    id=user.id,
                    name=user.name,
                    role=user.role.value,
                    teams=user.teams,
                    is_active=user.is_active,
                    created_by=user.created_by,
                    created_at_ms=user.created_at_ms,
                )
            )
            s.flush()
            after = {"role": user.role.value, "teams": user.teams}
            audit_in_transaction(
                s.connection(),
                "user.create",
                f"user:{user.name}",
                after=after,
                actor=user.created_by,
            )
        return user

    def _user_row(self, s: Session, name: str) -> UserRow:
        row = s.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise NotFound(f"no user {name!r}", field="user")
        return row

    def get_user(self, name: str) -> User:
        """A user by name; raises :class:`NotFound`."""
        with self.read() as s:
            return _user(self._user_row(s, name))

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self.read() as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def update_user(self, name: str, changes: dict[str, Any], actor: str | None) -> User:
        """Change ``is_active``, ``role`` or ``teams`` of a user (audited with before/after)."""
        with self.write() as s:
            row = self._user_row(s, name)
            before = {k: getattr(row, k) for k in changes}
            for key, value in changes.items():
                setattr(row, key, value)
            s.flush()
            audit_in_transaction(
                s.connection(),
                "user.update",
                f"user:{name}",
                before=before,
                after=dict(changes),
                actor=actor,
            )
            return _user(row)

    def count_active_admins(self) -> int:
        """How many enabled users have the admin role."""
        with self.read() as s:
            query = select(func.count()).where(
                UserRow.role == Role.ADMIN.value, UserRow.is_active.is_(True)
            )
            return int(s.scalar(query) or 0)

    # ---- tokens -----------------------------------------------------------------
    def create_token(self, token: Token, secret_hash: str) -> Token:
        """Store a token's hash (audited in the same transaction)."""
        with self.write(conflict="token id collision; retry", field="token") as s:
            user = self._user_row(s, token.user)
            s.add(
                ApiTokenRow(
                    id=token.id,
                    user_id=user.id,
                    name=token.name,
                    secret_hash=secret_hash,
                    created_by=token.created_by,
                    created_at_ms=token.created_at_ms,
                    expires_at_ms=token.expires_at_ms,
                )
            )
            s.flush()
            audit_in_transaction(
                s.connection(),
                "token.create",
                f"token:{token.id}",
                after={
                    "user": token.user,
                    "name": token.name,
                    "expires_at_ms": token.expires_at_ms,
                },
                actor=token.created_by,
            )
        return token

    def find_token(self, token_id: str) -> tuple[Token, str, User] | None:
        """``(token, secret hash, owner)`` for a token id, or None."""
        with self.read() as s:
            found = s.execute(
                select(ApiTokenRow, UserRow)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .where(ApiTokenRow.id == token_id)
            ).first()
            if found is None:
                return None
            token_row, user_row = found
            return _token(token_row, user_row.name), token_row.secret_hash, _user(user_row)

    def list_tokens(self, user: str | None = None) -> list[Token]:
        """Tokens (of one user), oldest first; never their secrets."""
        with self.read() as s:
            query = select(ApiTokenRow, UserRow.name).join(
                UserRow, UserRow.id == ApiTokenRow.user_id
            )
            if user is not None:
                self._user_row(s, user)
                query = query.where(UserRow.name == user)
            rows = s.execute(query.order_by(ApiTokenRow.created_at_ms, ApiTokenRow.id))
            return [_token(t, name) for t, name in rows]

    def revoke_token(self, token_id: str, actor: str | None) -> Token:
        """Mark a token revoked (idempotent; the first revocation time is kept)."""
        with self.write() as s:
            found = s.execute(
                select(ApiTokenRow, UserRow.name)
                .join(UserRow, UserRow.id == ApiTokenRow.user_id)
                .where(ApiTokenRow.id == token_id)
            ).first()
            if found is None:
                raise NotFound(f"no token {token_id!r}", field="token_id")
            row, user = found
            if row.revoked_at_ms is None:
                row.revoked_at_ms = now_ms()
                s.flush()
                audit_in_transaction(
                    s.connection(),
                    "token.revoke",
                    f"token:{token_id}",
                    after={"user": user},
                    actor=actor,
                )
            return _token(row, user)

    # ---- audit ------------------------------------------------------------------
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Insert audit entries in one transaction."""
        if not entries:
            return
        rows = [e.model_dump(exclude={"id"}) for e in entries]
        with self.write_conn() as conn:
            conn.execute(insert(AuditRow), rows)

    def query_audit(self, query: AuditQuery) -> list[AuditEntry]:
        """Audit entries matching ``query``, newest first."""
        statement = select(AuditRow)
        if query.actor is not None:
            statement = statement.where(AuditRow.actor == query.actor)
        if query.action is not None:
            statement = statement.where(AuditRow.action.contains(query.action, autoescape=True))
        if query.since_ms is not None:
            statement = statement.where(AuditRow.at_ms >= query.since_ms)
        statement = statement.order_by(AuditRow.at_ms.desc(), AuditRow.id.desc())
        with self.read() as s:
            return [_entry(r) for r in s.scalars(statement.limit(query.limit))]
