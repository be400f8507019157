"""``keel cache``: drop cached predictions on every gateway replica (through ``keel.Client``)."""

from __future__ import annotations

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli

cache_app = typer.Typer(
    help="Manage the prediction cache of running gateways.\n\n"
    "Example: keel cache invalidate churn --version 3",
    no_args_is_help=True,
)


@cache_app.command("invalidate")
def invalidate(
    model: str | None = typer.Argument(None, help="Model name (omit with --all)."),
    version: int | None = typer.Option(None, "--version", help="Only this version."),
    entity: str | None = typer.Option(
        None, "--entity", help="Only predictions made for this entity key."
    ),
    everything: bool = typer.Option(False, "--all", help="Every model's entries."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Drop cached predictions of MODEL (one --version or --entity), or --all, on every replica.

    With --server (or KEEL_SERVER_URL) the server drops them and tells its replicas over
    Redis. Without it, keel publishes the event to KEEL_REDIS_URL itself, or, when Redis is
    not configured, asks the local server at KEEL_HOST:KEEL_PORT.

    Example: keel cache invalidate churn --version 3
    """
    from keel.serving.events import make_invalidation

    # checked here first: bad options exit 2 before any client or connection is made
    run_cli(
        lambda: make_invalidation(
            model=model, version=version, entity=entity, everything=everything
        )
    )
    result = run_cli(
        lambda: make_client(server, token).invalidate_cache(
            model, version=version, entity=entity, everything=everything
        )
    )
    emit(
        result,
        as_json,
        lambda: console.print(
            f"invalidated: {result['dropped']} cached prediction(s) dropped via {result['via']}"
        ),
    )
