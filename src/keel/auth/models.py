"""Entities of authentication and audit: roles, users, tokens, audit entries."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import Field

from keel._models import MAX_INT64, Entity

__all__ = [
    "AuditEntry",
    "AuditQuery",
    "CreatedToken",
    "Principal",
    "Role",
    "Token",
    "TokenCreate",
    "User",
    "UserCreate",
    "UserUpdate",
]


class Role(enum.StrEnum):
    """What a user may do; each role includes the ones before it."""

    VIEWER = "viewer"
    EDITOR = "editor"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer up to 3 for admin."""
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """True when this role is at least ``needed``."""
        return _RANKS[self] >= _RANKS[needed]


_RANKS = {Role.VIEWER: 0, Role.EDITOR: 1, Role.DEPLOYER: 2, Role.ADMIN: 3}


class User(Entity):
    """A person or service account; ``teams`` name groups that can own models."""

    id: str
    name: str
    role: Role
    teams: list[str] = Field(default_factory=list)
    is_active: bool = True
    created_by: str | None = None
    created_at_ms: int


class Token(Entity):
    """An API token's public record (the secret is never stored or shown again)."""

    id: str
    user: str
    name: str | None = None
    created_by: str | None = None
    created_at_ms: int
    expires_at_ms: int | None = None
    revoked_at_ms: int | None = None


class CreatedToken(Token):
    """A token just created: ``token`` holds the secret, shown this once."""

    token: str


class Principal(Entity):
    """The authenticated caller of one request."""

    name: str
    role: Role
    teams: list[str] = Field(default_factory=list)
    token_id: str | None = None

    def owns(self, owner: str | None) -> bool:
        """True when ``owner`` (a user or team name) is this caller or one of its teams."""
        return owner is not None and (owner == self.name or owner in self.teams)


class AuditEntry(Entity):
    """One audited action: who did what to which target, when, and with what result."""

    id: int | None = None
    at_ms: int
    actor: str | None = None
    action: str
    method: str | None = None
    route: str | None = None
    target: str | None = None
    status: int | None = None
    client: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


class AuditQuery(Entity):
    """Filters of an audit-log query; all optional, newest entries first."""

    actor: str | None = None
    action: str | None = Field(default=None, description="Substring of the action.")
    since_ms: int | None = Field(default=None, ge=0, le=MAX_INT64)
    limit: int = Field(default=100, ge=1, le=10_000)


# Request bodies of the admin API, also the SDK's validators on both transports (#15.26).
class UserCreate(Entity):
    """A new user: name, role and teams."""

    name: str = Field(max_length=256)
    role: Role = Role.VIEWER
    teams: list[str] = Field(default_factory=list, max_length=50)


class UserUpdate(Entity):
    """Changes to a user (unset fields stay as they are)."""

    is_active: bool | None = None
    role: Role | None = None
    teams: list[str] | None = Field(default=None, max_length=50)


class TokenCreate(Entity):
    """A new token: what it is for and its lifetime."""

    name: str | None = Field(default=None, max_length=256)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
