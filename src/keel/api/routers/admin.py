"""REST routes for users, API tokens and the audit log (admin only; see api/authz.py).

The audit log is read-only here on purpose: no route updates or deletes entries.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from keel._models import MAX_INT64
from keel.api.deps import Actor, Svc

# Request bodies live with the auth models: the SDK validates with them too (#15.26).
from keel.auth.models import (
    AuditEntry,
    AuditQuery,
    CreatedToken,
    Role,
    Token,
    TokenCreate,
    User,
    UserCreate,
    UserUpdate,
)

router = APIRouter(prefix="/v1", tags=["security"])


class WhoAmI(BaseModel):
    auth: str
    name: str | None = None
    role: Role | None = None
    teams: list[str] = Field(default_factory=list)


@router.get("/whoami", response_model=WhoAmI)
def whoami(request: Request, svc: Svc) -> WhoAmI:
    """The caller as the server sees it (``auth`` is ``on`` or ``off``)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return WhoAmI(auth="on" if svc.auth.enabled else "off")
    return WhoAmI(auth="on", name=principal.name, role=principal.role, teams=principal.teams)


@router.get("/users", response_model=list[User])
def list_users(svc: Svc) -> list[User]:
    """Every user."""
    return svc.auth.list_users()


@router.post("/users", status_code=201, response_model=User)
def create_user(body: UserCreate, svc: Svc, actor: Actor) -> User:
    """Create a user; give it a token with ``POST /v1/users/{name}/tokens``."""
    return svc.auth.create_user(body.name, body.role, teams=body.teams, created_by=actor)


@router.get("/users/{name}", response_model=User)
def get_user(name: str, svc: Svc) -> User:
    """One user."""
    return svc.auth.get_user(name)


@router.patch("/users/{name}", response_model=User)
def update_user(name: str, body: UserUpdate, svc: Svc, actor: Actor) -> User:
    """Disable / enable a user, change its role or teams."""
    return svc.auth.update_user(
        name, is_active=body.is_active, role=body.role, teams=body.teams, actor=actor
    )


@router.get("/users/{name}/tokens", response_model=list[Token])
def list_user_tokens(name: str, svc: Svc) -> list[Token]:
    """A user's tokens (never their secrets)."""
    return svc.auth.list_tokens(name)


@router.post("/users/{name}/tokens", status_code=201, response_model=CreatedToken)
async def create_token(name: str, body: TokenCreate, svc: Svc, actor: Actor) -> CreatedToken:
    """A new token for ``name``; the response is the only time its secret is shown."""
    return await run_in_threadpool(
        svc.auth.create_token,
        name,
        name=body.name,
        expires_in_days=body.expires_in_days,
        created_by=actor,
    )


@router.get("/tokens", response_model=list[Token])
def list_tokens(svc: Svc) -> list[Token]:
    """Every token (never their secrets)."""
    return svc.auth.list_tokens()


@router.delete("/tokens/{token_id}", response_model=Token)
def revoke_token(token_id: str, svc: Svc, actor: Actor) -> Token:
    """Revoke a token: at once on this replica, within ``KEEL_AUTH_CACHE_TTL_S`` on others."""
    return svc.auth.revoke_token(token_id, actor=actor)


@router.get("/audit", response_model=list[AuditEntry])
def audit(
    svc: Svc,
    actor: str | None = Query(None, max_length=256),
    action: str | None = Query(None, max_length=300),
    since_ms: int | None = Query(None, ge=0, le=MAX_INT64),
    limit: int = Query(100, ge=1, le=10_000),
) -> list[AuditEntry]:
    """Audit entries, newest first; read-only (no route edits or deletes entries)."""
    query = AuditQuery(actor=actor, action=action, since_ms=since_ms, limit=limit)
    return svc.auth.audit(query)
