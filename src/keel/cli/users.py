"""``keel users``, ``keel tokens`` and ``keel audit``.

Without ``--server`` these act on the configured database directly (whoever can
open it is already trusted with everything); with ``--server`` they call the
admin API with ``--token`` / ``KEEL_TOKEN``.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from keel.auth.models import AuditEntry, AuditQuery, CreatedToken, Role, Token, User
from keel.cli._context import ServerOption, TokenOption
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table
from keel.config import Settings
from keel.errors import InvalidInput

if TYPE_CHECKING:
    # The embedded path opens every service (pandas, SQLAlchemy, scikit-learn): loaded
    # in _local only, so `keel tokens list --server …` and `--help` do not pay (#15.14).
    from keel.services import Services

__all__ = ["audit", "tokens_app", "users_app"]

T = TypeVar("T")

users_app = typer.Typer(
    help="Manage users (API authentication).\n\nExample: keel users create-admin alice",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    help="Create, list and revoke API tokens.\n\nExample: keel tokens create alice --name ci",
    no_args_is_help=True,
)


def _local(call: Callable[[Services], T]) -> T:
    def run() -> T:
        from keel.services import open_services

        services = open_services(Settings())
        try:
            return call(services)
        finally:
            services.close()

    return run_cli(run)


def _remote(server: str, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    import httpx

    from keel.errors import Unavailable, error_from_payload

    def run() -> Any:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            response = httpx.request(
                method, server.rstrip("/") + path, headers=headers, timeout=30, **kwargs
            )
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach keel server at {server}: {exc}") from exc
        if response.status_code >= 400:
            try:
                payload: Any = response.json()
            except ValueError:
                payload = response.text
            raise error_from_payload(response.status_code, payload)
        return response.json()

    return run_cli(run)


def _me() -> str:
    return f"local:{getpass.getuser()}"


def _show_token(created: CreatedToken) -> None:
    console.print(f"token for {created.user} (id {created.id}); shown once, store it now:")
    typer.echo(created.token)


def _users_table(users: list[User]) -> None:
    table(
        "users",
        ["name", "role", "teams", "active", "created"],
        [
            (u.name, u.role.value, ", ".join(u.teams), u.is_active, fmt_ms(u.created_at_ms))
            for u in users
        ],
    )


@users_app.command("create-admin")
def create_admin(
    name: str = typer.Argument(..., help="User name of the first admin."),
    expires_in_days: int | None = typer.Option(None, help="Token lifetime (default: none)."),
    as_json: bool = JsonOption,
) -> None:
    """Bootstrap: create the first admin and print its API token once.

    Works on the configured database only, and only while no admin exists.

    Example: keel users create-admin alice
    """
    created = _local(lambda s: s.auth.create_admin(name, token_days=expires_in_days))
    emit(created, as_json, lambda: _show_token(created))


@users_app.command("create")
def create_user(
    name: str = typer.Argument(..., help="User name."),
    role: Role = typer.Option(Role.VIEWER, help="viewer, editor, deployer or admin."),
    team: list[str] = typer.Option([], help="A team the user belongs to (repeatable)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create a user; then give it a token with `keel tokens create NAME`.

    Example: keel users create bob --role deployer --team growth
    """
    if server:
        body = {"name": name, "role": role.value, "teams": team}
        user = User.model_validate(_remote(server, token, "POST", "/v1/users", json=body))
    else:
        user = _local(lambda s: s.auth.create_user(name, role, teams=team, created_by=_me()))
    emit(user, as_json, lambda: _users_table([user]))


@users_app.command("list")
def list_users(
    as_json: bool = JsonOption, server: str | None = ServerOption, token: str | None = TokenOption
) -> None:
    """List users with their roles and teams.

    Example: keel users list --json
    """
    if server:
        users = [User.model_validate(u) for u in _remote(server, token, "GET", "/v1/users")]
    else:
        users = _local(lambda s: s.auth.list_users())
    emit(users, as_json, lambda: _users_table(users))


def _set_active(
    name: str, active: bool, as_json: bool, server: str | None, token: str | None
) -> None:
    if server:
        body = {"is_active": active}
        raw = _remote(server, token, "PATCH", f"/v1/users/{name}", json=body)
        user = User.model_validate(raw)
    else:
        user = _local(lambda s: s.auth.set_active(name, active, actor=_me()))
    emit(user, as_json, lambda: _users_table([user]))


@users_app.command("disable")
def disable_user(
    name: str = typer.Argument(..., help="User name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Disable a user: its tokens stop working (other replicas: within the cache TTL).

    Example: keel users disable bob
    """
    _set_active(name, False, as_json, server, token)


@users_app.command("enable")
def enable_user(
    name: str = typer.Argument(..., help="User name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Re-enable a disabled user.

    Example: keel users enable bob
    """
    _set_active(name, True, as_json, server, token)


def _tokens_table(tokens: list[Token]) -> None:
    table(
        "tokens",
        ["id", "user", "name", "created", "expires", "revoked"],
        [
            (
                t.id,
                t.user,
                t.name,
                fmt_ms(t.created_at_ms),
                fmt_ms(t.expires_at_ms),
                fmt_ms(t.revoked_at_ms),
            )
            for t in tokens
        ],
    )


@tokens_app.command("create")
def create_token(
    user: str = typer.Argument(..., help="Owner of the token."),
    name: str | None = typer.Option(None, help="What the token is for, e.g. 'ci'."),
    expires_in_days: int | None = typer.Option(None, help="Lifetime in days (default: none)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create an API token for a user and print it once (only its hash is stored).

    Example: keel tokens create bob --name ci --expires-in-days 90
    """
    if server:
        body = {"name": name, "expires_in_days": expires_in_days}
        raw = _remote(server, token, "POST", f"/v1/users/{user}/tokens", json=body)
        created = CreatedToken.model_validate(raw)
    else:
        created = _local(
            lambda s: s.auth.create_token(
                user, name=name, expires_in_days=expires_in_days, created_by=_me()
            )
        )
    emit(created, as_json, lambda: _show_token(created))


@tokens_app.command("list")
def list_tokens(
    user: str | None = typer.Option(None, help="Only this user's tokens."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List tokens (ids, owners, expiry, revocation; never secrets).

    Example: keel tokens list --user bob
    """
    if server:
        path = f"/v1/users/{user}/tokens" if user else "/v1/tokens"
        tokens = [Token.model_validate(t) for t in _remote(server, token, "GET", path)]
    else:
        tokens = _local(lambda s: s.auth.list_tokens(user))
    emit(tokens, as_json, lambda: _tokens_table(tokens))


@tokens_app.command("revoke")
def revoke_token(
    token_id: str = typer.Argument(..., help="Token id (the hex part after 'keel_')."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Revoke a token.

    Example: keel tokens revoke 3f2a9c0d1e4b5a67
    """
    if server:
        revoked = Token.model_validate(_remote(server, token, "DELETE", f"/v1/tokens/{token_id}"))
    else:
        revoked = _local(lambda s: s.auth.revoke_token(token_id, actor=_me()))
    emit(revoked, as_json, lambda: _tokens_table([revoked]))


def parse_since(text: str, now_ms: int) -> int:
    """``30m`` / ``2h`` / ``7d`` / ``1w`` ago, or an ISO date/time (UTC when no offset), in ms."""
    from keel._durations import parse_age_s

    age_s = parse_age_s(text)
    if age_s is not None:
        return now_ms - age_s * 1000
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"--since {text!r}: use a duration like 30m, 2h, 7d, 1w or an ISO date", field="since"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def audit(
    actor: str | None = typer.Option(None, help="Only entries by this user."),
    since: str | None = typer.Option(None, help="Only entries newer than 30m / 2h / 7d / a date."),
    action: str | None = typer.Option(None, help="Only actions containing this text, e.g. alias."),
    limit: int = typer.Option(100, min=1, max=10_000, help="Most entries shown."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show the audit log, newest first: who changed what, when, from where.

    Example: keel audit --since 1d --action alias --json
    """
    from keel._models import now_ms

    since_ms = run_cli(lambda: parse_since(since, now_ms())) if since else None
    query = AuditQuery(actor=actor, action=action, since_ms=since_ms, limit=limit)
    if server:
        params = query.model_dump(exclude_none=True)
        raw = _remote(server, token, "GET", "/v1/audit", params=params)
        entries = [AuditEntry.model_validate(e) for e in raw]
    else:
        entries = _local(lambda s: s.auth.audit(query))

    def render() -> None:
        table(
            "audit log",
            ["at", "actor", "action", "target", "status", "client", "before", "after"],
            [
                (
                    fmt_ms(e.at_ms),
                    e.actor,
                    e.action,
                    e.target,
                    e.status,
                    e.client,
                    e.before,
                    e.after,
                )
                for e in entries
            ],
        )

    emit(entries, as_json, render)
