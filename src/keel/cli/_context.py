"""Build the SDK client the CLI commands use (embedded, or a server with --server)."""

from __future__ import annotations

import os

import typer

from keel.client import Client
from keel.config import Settings

__all__ = ["ServerOption", "TokenOption", "make_client"]

ServerOption = typer.Option(
    None,
    "--server",
    envvar="KEEL_SERVER_URL",
    help="Talk to a keel server (http://host:port) instead of the embedded store.",
)
TokenOption = typer.Option(None, "--token", envvar="KEEL_TOKEN", help="API token for --server.")


def make_client(server: str | None, token: str | None = None) -> Client:
    """An embedded client, or an HTTP client when ``server`` is given."""
    settings = Settings()
    return Client(server, token=token or os.environ.get("KEEL_TOKEN"), settings=settings)
