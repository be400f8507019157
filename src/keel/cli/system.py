"""``keel server`` and ``keel db``."""

from __future__ import annotations

import ipaddress
import os

import typer

from keel.cli._output import JsonOption, console, emit, run_cli
from keel.config import Settings

db_app = typer.Typer(
    help="Manage the metadata database schema.\n\nExample: keel db upgrade",
    no_args_is_help=True,
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server(
    host: str | None = typer.Option(None, help="Bind address (default KEEL_HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default KEEL_PORT or 8080)."),
    workers: int | None = typer.Option(None, help="uvicorn worker processes."),
    allow_remote_without_auth: bool = typer.Option(
        False,
        help="Bind a non-loopback address with KEEL_AUTH=off (only behind a trusted, "
        "authenticating proxy).",
    ),
) -> None:
    """Run the REST API (OpenAPI at /docs, /healthz, /readyz, /metrics).

    A non-loopback address needs KEEL_AUTH=on and an admin (`keel users create-admin`).

    Example: KEEL_AUTH=on keel server --host 0.0.0.0 --port 8080
    """
    import uvicorn

    from keel.services import open_services

    settings = Settings()
    host = host or settings.host
    port = port if port is not None else settings.port
    workers = workers or settings.workers
    if not _is_loopback(host):
        problem = _remote_problem(settings, allow_remote_without_auth)
        if problem:
            console.print(f"[bold red]refusing to listen on {host}:[/] {problem}", soft_wrap=True)
            raise typer.Exit(2)
    # Migrate once here so that several workers do not race to upgrade the schema.
    run_cli(lambda: open_services(settings).close())
    os.environ["KEEL_HOST"], os.environ["KEEL_PORT"] = host, str(port)
    console.print(f"keel server on http://{host}:{port} (docs at /docs)")
    uvicorn.run(
        "keel.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def _remote_problem(settings: Settings, allow_without_auth: bool) -> str | None:
    """Why the server may not listen on the network, or None when it may."""
    if settings.auth != "on":
        if allow_without_auth:
            console.print("[yellow]warning:[/] KEEL_AUTH=off on a network address")
            return None
        return (
            "keel would accept unauthenticated calls from the network. Set KEEL_AUTH=on "
            "and create the first admin with `keel users create-admin NAME` (it prints "
            "the admin's API token once), or bind 127.0.0.1."
        )
    from keel.services import open_services

    services = run_cli(lambda: open_services(settings))
    try:
        if not services.auth.has_admin():
            return (
                "KEEL_AUTH=on but no admin exists, so nobody could use the API. Run "
                "`keel users create-admin NAME` first (it prints the admin's API token once)."
            )
    finally:
        services.close()
    return None


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision."), as_json: bool = JsonOption
) -> None:
    """Upgrade the schema of the configured database (KEEL_DATABASE_URL).

    Example: KEEL_DATABASE_URL=postgresql+psycopg://localhost/keel keel db upgrade
    """
    from keel.store.sql.engine import ensure_dir, make_engine
    from keel.store.sql.migrate import upgrade

    settings = Settings()
    ensure_dir(settings.home, "KEEL_HOME")
    engine = make_engine(settings)
    try:
        current = run_cli(lambda: upgrade(engine, revision))
    finally:
        engine.dispose()
    emit(
        {"database": settings.resolved_database_url, "revision": current},
        as_json,
        lambda: console.print(f"{settings.resolved_database_url} at revision {current}"),
    )


@db_app.command("current")
def db_current(as_json: bool = JsonOption) -> None:
    """Show the schema revision of the configured database and the newest one known.

    Example: keel db current --json
    """
    from sqlalchemy.exc import DBAPIError

    from keel.store.sql.engine import make_engine
    from keel.store.sql.migrate import current_revision, head_revision, store_error

    engine = make_engine(Settings())
    try:
        info = {"current": current_revision(engine), "head": head_revision()}
    except DBAPIError as exc:  # a corrupt or unreadable file: one line, not a traceback
        raise store_error(engine, exc) from None
    finally:
        engine.dispose()
    emit(info, as_json, lambda: console.print(f"current {info['current']}  head {info['head']}"))
