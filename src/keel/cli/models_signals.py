"""``keel models signals set|show NAME``: a model's implicit feedback signals (R-TRN-23),
registered on ``keel models`` by keel.cli.models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

__all__ = ["signals_app"]

signals_app = typer.Typer(
    help="Implicit feedback signals: which signal means which label.\n\n"
    "Example: keel models signals set churn -f signals.yaml",
    no_args_is_help=True,
)


@signals_app.command("set")
def set_signals(
    name: str = typer.Argument(..., help="Model name."),
    file: Path = typer.Option(..., "--file", "-f", help="The mapping (YAML or JSON)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Store the model's signal mapping, e.g. ``{watched: 1, skipped: 0,
    dwell_seconds: {threshold: 30}}``; a bad mapping exits 2 naming the signal.

    Example: keel models signals set churn -f signals.yaml
    """
    from keel._documents import load_document

    def run() -> dict[str, Any]:
        try:
            text = file.read_text()
        except OSError as exc:
            raise InvalidInput(f"--file: cannot read {file}: {exc}", field="--file") from None
        mapping = load_document(text, field="signals", what=str(file))
        if not isinstance(mapping, dict):
            raise InvalidInput(f"{file}: expected a mapping of signal → label", field="signals")
        return make_client(server, token).set_signals(name, mapping)

    stored = run_cli(run)
    emit(stored, as_json, lambda: _render(name, stored))


@signals_app.command("show")
def show_signals(
    name: str = typer.Argument(..., help="Model name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Print the model's signal mapping (exit 1 when it has none).

    Example: keel models signals show churn --json
    """
    found = run_cli(lambda: make_client(server, token).get_signals(name))
    if found is None:
        console.print(f"model {name!r} has no signal mapping", highlight=False)
        raise typer.Exit(1)
    emit(found, as_json, lambda: _render(name, found))


def _render(name: str, mapping: dict[str, Any]) -> None:
    rows = []
    for signal, rule in mapping.items():
        if isinstance(rule, dict):
            rows.append(
                [signal, f"≥ {rule['threshold']:g} → {rule['above']}, else {rule['below']}"]
            )
        else:
            rows.append([signal, str(rule)])
    table(f"signals of {name}", ["signal", "label"], rows)
