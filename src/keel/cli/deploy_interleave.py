"""``keel deploy rank|clicks|interleaving``: served team-draft interleaving (R-DEP-18) of a
deployment's primary and candidate arm. Registered on ``keel deploy`` by :func:`register`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, as_option, console, emit, run_cli, table
from keel.errors import InvalidInput, KeelError

__all__ = ["register"]

#: SDK argument → the option that sets it, so an error names what the user typed.
_OPTIONS = {"instances": "--instances", "k": "--k", "routing_key": "--routing-key"}


def _rows(path: Path, id_column: str | None) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """The candidate rows of a JSON file (a list of objects), and their ids taken out of
    ``id_column`` when named."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"--instances: cannot read {path}: {exc}", field="--instances") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise InvalidInput("--instances: expected a JSON list of rows", field="--instances")
    if id_column is None:
        return rows, None
    if not all(id_column in row for row in rows):
        raise InvalidInput(
            f"--id-column: not every row has a {id_column!r} key", field="--id-column"
        )
    ids = [row[id_column] for row in rows]
    return [{k: v for k, v in row.items() if k != id_column} for row in rows], ids


def rank(
    name: str = typer.Argument(..., help="Deployment name."),
    instances: Path = typer.Option(..., "--instances", help="JSON file: a list of candidate rows."),
    id_column: str | None = typer.Option(
        None, "--id-column", help="Key of each row holding its item id (default: row index)."
    ),
    k: int | None = typer.Option(None, "--k", help="How many items to show (default: all)."),
    routing_key: str | None = typer.Option(None, help="Who the list is for (a user id)."),
    impression_id: str | None = typer.Option(None, help="Reuse an id to get the same list."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Interleave the primary's and the candidate arm's rankings of candidate rows.

    Both arms score every row; team draft merges their rankings (seeded by the impression
    id) and the impression is stored for its clicks. Exit 2 on bad input.

    Example: keel deploy rank churn-live --instances candidates.json --id-column item --k 5
    """

    def run() -> dict[str, Any]:
        rows, ids = _rows(instances, id_column)
        try:
            return make_client(server, token).rank(
                name,
                rows,
                item_ids=ids,
                k=k,
                routing_key=routing_key,
                impression_id=impression_id,
            )
        except KeelError as error:
            raise as_option(error, _OPTIONS) from None

    shown = run_cli(run)

    def render() -> None:
        arms = shown["arms"]
        table(
            f"{shown['deployment']} impression {shown['impression_id']}",
            ["position", "item", "team", "arm"],
            [
                (i + 1, item, team, arms[team])
                for i, (item, team) in enumerate(zip(shown["items"], shown["teams"], strict=True))
            ],
        )

    emit(shown, as_json, render)


def clicks(
    name: str = typer.Argument(..., help="Deployment name."),
    impression_id: str = typer.Argument(..., help="The impression the clicks belong to."),
    clicked: list[str] = typer.Argument(None, help="Every item clicked (none: no click)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Record the items clicked in one impression (replaces its earlier clicks).

    Item ids are matched as text, so 3 names the item 3. Exit 2 for an item not shown.

    Example: keel deploy clicks churn-live 4f1c0e9a2b c17 c4
    """
    recorded = run_cli(
        lambda: make_client(server, token).record_clicks(name, impression_id, clicked or [])
    )

    def render() -> None:
        winner = recorded["winner"] or ("tie" if recorded["tie"] else "no click")
        console.print(
            f"impression {recorded['impression_id']}: {len(recorded['clicked'])} clicked, "
            f"won by {winner}" + (" (replaced earlier clicks)" if recorded["replaced"] else ""),
            highlight=False,
        )

    emit(recorded, as_json, render)


def interleaving(
    name: str = typer.Argument(..., help="Deployment name."),
    alpha: float = typer.Option(0.05, help="Significance level of the sign test."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Which arm users prefer: the sign test over impressions with a click.

    Example: keel deploy interleaving churn-live
    """

    def run() -> dict[str, Any]:
        try:
            return make_client(server, token).interleaving(name, alpha=alpha)
        except InvalidInput as error:
            if error.field != "alpha":
                raise
            raise InvalidInput(
                f"--alpha: {error.message.split(': ', 1)[-1]}", field="--alpha"
            ) from None

    test = run_cli(run)

    def render() -> None:
        arms = {team: ", ".join(sorted({t[team]["arm"] for t in test["teams"]})) for team in "ab"}
        clicked = f"{test['with_clicks']} of {test['impressions']} impressions clicked"
        table(
            f"{test['deployment']}: {clicked}",
            ["team", "arm", "wins"],
            [
                ("a", arms["a"], test["wins_a"]),
                ("b", arms["b"], test["wins_b"]),
                ("tie", "", test["ties"]),
            ],
        )
        share = "-" if test["share_a"] is None else f"{test['share_a']:.3f}"
        ci = "" if test["ci_low"] is None else f" [{test['ci_low']:.3f}, {test['ci_high']:.3f}]"
        preferred = test["preferred_arm"] or test["preferred"] or "none (not significant)"
        console.print(
            f"share a {share}{ci}, p={test['pvalue']:.3g}; preferred: {preferred}",
            highlight=False,
        )

    emit(test, as_json, render)


def register(app: typer.Typer) -> None:
    """Add the commands to ``keel deploy``."""
    app.command("rank")(rank)
    app.command("clicks")(clicks)
    app.command("interleaving")(interleaving)
