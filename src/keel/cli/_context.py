"""Build the SDK client the CLI commands use (embedded, or a server with --server)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from keel.client import Client

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
    # Imported here, not at the top: the SDK pulls in pandas and the stores, which
    # `keel --help` and `keel version` must not pay for (#15.14).
    from keel.client import Client
    from keel.config import Settings

    settings = Settings()
    client = Client(server, token=token or os.environ.get("KEEL_TOKEN"), settings=settings)
    _open_clients.append(client)
    return client


def close_clients() -> None:
    """Close the clients this command opened (database engines, HTTP connection pools)."""
    while _open_clients:
        _open_clients.pop().close()
