"""Authentication and audit: users, roles, API tokens, the audit log.

:class:`keel.auth.service.AuthService` holds the use cases (imported from its
module so the store can import the entities here without a cycle).
"""

from __future__ import annotations

from keel.auth.models import (
    AuditEntry,
    AuditQuery,
    CreatedToken,
    Principal,
    Role,
    Token,
    User,
)

__all__ = ["AuditEntry", "AuditQuery", "CreatedToken", "Principal", "Role", "Token", "User"]
