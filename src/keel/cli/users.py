"""``keel users``, ``keel tokens`` and ``keel audit``, through the SDK (``keel.Client``).

Without ``--server`` these act on the configured database (whoever can open it is
already trusted with everything); with ``--server`` they call the admin API with
``--token`` / ``KEEL_TOKEN``. ``users create-admin`` is the one embedded-only command:
it bootstraps the first admin, before any token exists to call a server with.
"""

from __future__ import annotations

import typer

from keel.auth.models import CreatedToken, Role, Token, User
from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table
from keel.config import Settings

__all__ = ["audit", "tokens_app", "users_app"]

users_app = typer.Typer(
    help="Manage users (API authentication).\n\nExample: keel users create-admin alice",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    help="Create, list and revoke API tokens.\n\nExample: keel tokens create alice --name ci",
    no_args_is_help=True,
)


def _create_admin(name: str, expires_in_days: int | None) -> CreatedToken:
    # Embedded only: the bootstrap runs before any admin (or token) exists.
    from keel.services import open_services

    services = open_services(Settings())
    try:
        return services.auth.create_admin(name, token_days=expires_in_days)
    finally:
        services.close()


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
    created = run_cli(lambda: _create_admin(name, expires_in_days))
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
    user = run_cli(lambda: make_client(server, token).create_user(name, role, team))
    emit(user, as_json, lambda: _users_table([user]))


@users_app.command("list")
def list_users(
    as_json: bool = JsonOption, server: str | None = ServerOption, token: str | None = TokenOption
) -> None:
    """List users with their roles and teams.

    Example: keel users list --json
    """
    users = run_cli(lambda: make_client(server, token).list_users())
    emit(users, as_json, lambda: _users_table(users))


def _set_active(
    name: str, active: bool, as_json: bool, server: str | None, token: str | None
) -> None:
    user = run_cli(lambda: make_client(server, token).set_user_active(name, active))
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
    created = run_cli(
        lambda: make_client(server, token).create_token(
            user, name=name, expires_in_days=expires_in_days
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
    tokens = run_cli(lambda: make_client(server, token).list_tokens(user))
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
    revoked = run_cli(lambda: make_client(server, token).revoke_token(token_id))
    emit(revoked, as_json, lambda: _tokens_table([revoked]))


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
    from keel._durations import parse_time

    # parsed here, not in the SDK, so that the error names the option
    moment = run_cli(lambda: parse_time(since, "--since"))
    since_ms = None if moment is None else int(moment.timestamp() * 1000)
    entries = run_cli(
        lambda: make_client(server, token).audit(
            actor=actor, action=action, since=since_ms, limit=limit
        )
    )

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
