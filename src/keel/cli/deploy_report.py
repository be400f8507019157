"""``keel deploy report|hypothesis``: a deployment's experiment report (interim while it
runs, the archived final one once it ended) and the amendment of its pre-registered
hypothesis before any traffic (R-DEP-17). Registered on ``keel deploy`` by :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

__all__ = ["register"]


def _num(value: Any) -> str:
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def report(
    name: str = typer.Argument(..., help="Deployment name."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the report as Markdown."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show the experiment report: hypothesis and verdict, numbers per arm and segment,
    decisions and warnings; ``interim`` while running, archived once ended.

    Example: keel deploy report churn-live --markdown > churn-live.md
    """
    if markdown and as_json:
        run_cli(_both)
    found = run_cli(lambda: make_client(server, token).deployment_report(name, markdown=markdown))
    if markdown:
        typer.echo(found, nl=False)
        return

    def render() -> None:
        state = "archived final" if found["archived"] else found["label"]
        console.print(f"[bold]{found['deployment']}[/] ({state}, {found['status']})")
        table(
            "arms",
            ["arm", "role", "version", "weight %", "requests", "error rate", "p99 ms", "metric"],
            [
                (
                    a["arm"],
                    a["role"],
                    _num(a["version"]),
                    _num(a["weight"]),
                    _num(a.get("n")),
                    _num(a.get("error_rate")),
                    _num(a.get("p99_latency_ms")),
                    _num((a.get("metric") or {}).get("value")),
                )
                for a in found["arms"]
            ],
        )
        for arm, verdict in found["verdicts"].items():
            hyp = verdict["hypothesis"]
            console.print(f"{arm}: hypothesis {hyp['verdict']} ({hyp.get('reason', '')})")
        for warning in found.get("warnings") or []:
            console.print(f"[yellow]warning[/] {warning['message']}", highlight=False)

    emit(found, as_json, render)


def _both() -> None:
    raise InvalidInput("--markdown: give --markdown or --json, not both", field="--markdown")


def hypothesis(
    name: str = typer.Argument(..., help="Deployment name."),
    file: Path = typer.Option(..., "--file", "-f", help="The hypothesis block (YAML or JSON)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Replace the hypothesis of a deployment that has served nothing yet (exit 1 with a
    conflict once it has: the hypothesis is pre-registered).

    Example: keel deploy hypothesis churn-live -f hypothesis.yaml
    """
    from keel._documents import load_document

    def run() -> dict[str, Any]:
        try:
            text = file.read_text()
        except OSError as exc:
            raise InvalidInput(f"--file: cannot read {file}: {exc}", field="--file") from None
        document = load_document(text, field="hypothesis")
        if not isinstance(document, dict):
            raise InvalidInput(
                "hypothesis: expected a mapping of keys to values", field="hypothesis"
            )
        return make_client(server, token).amend_deployment_hypothesis(name, document)

    found = run_cli(run)
    emit(found, as_json, lambda: console.print(f"hypothesis of {name} registered: {found}"))


def register(app: typer.Typer) -> None:
    """Add the commands to ``keel deploy``."""
    app.command("report")(report)
    app.command("hypothesis")(hypothesis)
