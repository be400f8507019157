"""``keel models exploration set|show|off NAME``: a model's serving exploration (R-TRN-24),
registered on ``keel models`` by keel.cli.models."""

from __future__ import annotations

import json
from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table

__all__ = ["exploration_app"]

exploration_app = typer.Typer(
    help="Serving exploration: a share of requests answered with a fixed action.\n\n"
    "Example: keel models exploration set hire --share 0.05 --action 1 --key entity_key",
    no_args_is_help=True,
)


def _action(text: str) -> Any:
    """``--action`` as JSON when it is JSON (1, true, 0.5, "x"), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@exploration_app.command("set")
def set_exploration(
    name: str = typer.Argument(..., help="Model name."),
    share: float = typer.Option(..., "--share", help="Share of requests explored, 0 < s < 1."),
    action: str = typer.Option(..., "--action", help="The answer explored rows get (JSON)."),
    key: str = typer.Option(
        "request_id", "--key", help="Routing key hashed: request_id or entity_key."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Answer ``--share`` of the model's requests with ``--action`` (chosen by a stable
    hash of the key) and log them with explore/propensity; bad values exit 2 naming the
    field.

    Example: keel models exploration set hire --share 0.05 --action 1
    """
    stored = run_cli(
        lambda: make_client(server, token).set_exploration(
            name, share=share, action=_action(action), key=key
        )
    )
    emit(stored, as_json, lambda: _render(name, stored))


@exploration_app.command("show")
def show_exploration(
    name: str = typer.Argument(..., help="Model name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Print the model's exploration policy (exit 1 when it explores nothing).

    Example: keel models exploration show hire --json
    """
    found = run_cli(lambda: make_client(server, token).get_exploration(name))
    if found is None:
        console.print(f"model {name!r} has no exploration policy", highlight=False)
        raise typer.Exit(1)
    emit(found, as_json, lambda: _render(name, found))


@exploration_app.command("off")
def exploration_off(
    name: str = typer.Argument(..., help="Model name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Stop exploring the model's requests.

    Example: keel models exploration off hire
    """
    removed = run_cli(lambda: make_client(server, token).clear_exploration(name))
    emit(
        {"removed": removed},
        as_json,
        lambda: console.print(
            f"exploration of {name!r} {'off' if removed else 'was already off'}", highlight=False
        ),
    )


def _render(name: str, policy: dict[str, Any]) -> None:
    table(
        f"exploration of {name}",
        ["share", "action", "key"],
        [[f"{policy['share']:g}", json.dumps(policy["action"]), policy["key"]]],
    )
