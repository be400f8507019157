"""``keel cache``: drop cached predictions on every gateway replica."""

from __future__ import annotations

from typing import Any

import httpx
import typer

from keel.cli._context import ServerOption, TokenOption
from keel.cli._output import JsonOption, console, emit, run_cli
from keel.config import Settings
from keel.errors import Unavailable, error_from_payload

cache_app = typer.Typer(
    help="Manage the prediction cache of running gateways.\n\n"
    "Example: keel cache invalidate churn --version 3",
    no_args_is_help=True,
)


def _over_http(server: str, token: str | None, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    url = f"{server.rstrip('/')}/v1/cache/invalidate"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
    except httpx.TransportError as exc:
        raise Unavailable(
            f"cannot reach keel server at {server}: {exc}. The in-process cache lives in the "
            "server: pass --server, or set KEEL_REDIS_URL to publish to every replica.",
            field="server",
        ) from exc
    try:
        payload: Any = response.json()
    except ValueError:
        payload = response.text
    if response.status_code >= 400:
        raise error_from_payload(response.status_code, payload)
    return {"via": server, "dropped": payload.get("dropped")}


def _over_redis(redis_url: str, body: dict[str, Any]) -> dict[str, Any]:
    from keel.serving.events import publish_invalidation

    dropped = publish_invalidation(
        redis_url,
        model=body["model"],
        version=body["version"],
        entity=body["entity"],
        everything=body["all"],
    )
    return {"via": "redis", "dropped": dropped}


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

    body = {"model": model, "version": version, "entity": entity, "all": everything}
    # checked here first: bad options exit 2 before any connection is made
    run_cli(
        lambda: make_invalidation(
            model=model, version=version, entity=entity, everything=everything
        )
    )
    settings = Settings()
    if server:
        result = run_cli(lambda: _over_http(server, token, body))
    elif settings.redis_url:
        result = run_cli(lambda: _over_redis(settings.redis_url or "", body))
    else:
        local = f"http://{settings.host}:{settings.port}"
        result = run_cli(lambda: _over_http(local, token, body))
    emit(
        result,
        as_json,
        lambda: console.print(
            f"invalidated: {result['dropped']} cached prediction(s) dropped via {result['via']}"
        ),
    )
