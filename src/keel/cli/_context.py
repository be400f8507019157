"""Build the SDK client the CLI commands use (embedded, or a server with --server)."""

from __future__ import annotations

import os

import typer

from keel.client import Client
from keel.config import Settings

__all__ = ["ServerOption", "TokenOption", "close_clients", "make_client"]

ServerOption = typer.Option(
    None,
    "--server",
    envvar="KEEL_SERVER_URL",
    help="Talk to a keel server (http://host:port) instead of the embedded store.",
)
TokenOption = typer.Option(None, "--token", envvar="KEEL_TOKEN", help="API token for --server.")


_open_clients: list[Client] = []


def make_client(server: str | None, token: str | None = None) -> Client:
    """An embedded client, or an HTTP client when ``server`` is given; closed at command end."""
    settings = Settings()
    client = Client(server, token=token or os.environ.get("KEEL_TOKEN"), settings=settings)
    _open_clients.append(client)
    return client


def close_clients() -> None:
    """Close the clients this command opened (database engines, HTTP connection pools)."""
    while _open_clients:
        _open_clients.pop().close()
