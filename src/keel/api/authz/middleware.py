"""The outermost ASGI layer: authenticate (``KEEL_AUTH=on``) and audit mutating calls.

:class:`SecurityMiddleware` checks the bearer token (401 before any body is read),
puts the caller in ``request.state.user`` / ``request.state.principal``, and appends
an audit entry for every mutating call (method not GET/HEAD/OPTIONS), whatever its
outcome, to the batched writer (:mod:`keel.auth.audit`); alias moves, users and tokens
are audited inside their own transaction instead. With ``KEEL_AUTH=off`` the
per-request work is a dictionary lookup and, for mutating calls, the audit entry.
"""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.api.authz.audit import audit_entry
from keel.api.authz.rules import PUBLIC_PATHS, READ_METHODS, is_unaudited
from keel.auth.models import Principal
from keel.errors import KeelError, Unauthorized
from keel.services import Services
from keel.store.sql.auth import RequestAudit, audit_context

__all__ = ["SecurityMiddleware", "bearer_token"]


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            return bearer_token(value)
    return None


def bearer_token(authorization: bytes) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))[:256]
    return None


class SecurityMiddleware:
    """Authenticate (when on) and audit every mutating call; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services: Services | None = getattr(scope["app"].state, "services", None)
        if services is None:  # not started (no lifespan yet): nothing to check against
            await self.app(scope, receive, send)
            return
        admitted, actor = await self.admit(services, scope, receive, send)
        if not admitted:
            return
        method: str = scope["method"]
        if self.unaudited(method, scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ctx = RequestAudit(
            actor=actor,
            method=method,
            target=scope["path"],
            client=client[0] if client else None,
            route_of=lambda: getattr(scope.get("route"), "path", None),
        )
        reset = audit_context.set(ctx)

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not ctx.written:
                ctx.written = True
                entry = audit_entry(ctx, scope, message["status"])
                if entry is not None:
                    services.auth.record(entry)
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            audit_context.reset(reset)

    async def admit(
        self, services: Services, scope: Scope, receive: Receive, send: Send
    ) -> tuple[bool, str | None]:
        """Authenticate the request when auth is on: ``(admitted, actor)``.

        A request that is not admitted has been answered (401, or 503 when the token
        store is unreachable) and its denial audited. Shared with the front door
        (:mod:`keel.api.frontdoor`), which serves unaudited routes only.
        """
        auth = services.auth
        state = scope.setdefault("state", {})
        if auth.enabled and scope["path"] not in PUBLIC_PATHS:
            try:
                principal = await self._authenticate(services, scope)
            except Unauthorized as error:
                await self._deny(services, scope, error, send)
                return False, None
            except KeelError as error:  # the token store is unreachable, say: 503, not 500
                from keel.api.errors import error_response

                await error_response(error)(scope, receive, send)
                return False, None
            state["user"], state["principal"] = principal.name, principal
            return True, principal.name
        if not auth.enabled:
            return True, _header(scope, b"x-keel-user")  # unverified hint: auth is off
        return True, None

    @staticmethod
    def unaudited(method: str, path: str) -> bool:
        """Whether a request is left out of the audit log (reads, and reads sent as POST)."""
        return method in READ_METHODS or is_unaudited(method, path)

    @staticmethod
    async def _authenticate(services: Services, scope: Scope) -> Principal:
        token = _bearer(scope)
        if token is None:
            raise Unauthorized("an API token is required (Authorization: Bearer keel_...)")
        cached = services.auth.cached_principal(token)
        if cached is not None:
            return cached
        # argon2 and the token lookup block: keep them off the event loop
        # the client address has its own failure budget (#15.3)
        peer = scope.get("client")
        principal: Principal = await run_in_threadpool(
            services.auth.authenticate, token, peer[0] if peer else None
        )
        return principal

    @staticmethod
    async def _deny(services: Services, scope: Scope, error: KeelError, send: Send) -> None:
        from keel.api.errors import error_response

        response = error_response(error, headers={"www-authenticate": 'Bearer realm="keel"'})
        if scope["method"] not in READ_METHODS:
            client = scope.get("client")
            ctx = RequestAudit(
                actor=None,
                method=scope["method"],
                target=scope["path"],
                client=client[0] if client else None,
            )
            entry = audit_entry(ctx, scope, error.status)
            if entry is not None:
                services.auth.record(entry)

        async def _receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        await response(scope, _receive, send)
