"""``keel validate``: run the validation gates on a challenger from any CI system."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import console, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.automation.gates import ValidationReport

__all__ = ["validate"]

# SDK field → the option that carries it, so an error names what the user typed.
_OPTIONS = {
    "model": "MODEL",
    "against": "--against",
    "holdout": "--holdout",
    "label": "--label",
    "training": "--train",
    "policy": "--policy",
}


def _named(error: InvalidInput) -> InvalidInput:
    field = error.field or ""
    if "." in field or field in _POLICY_KEYS or field == "policy":
        # a policy error keeps its key path, in the field and the message (``--policy:
        # fairness.max_dp: unknown key``): the option alone would hide it
        text = error.message.removeprefix("policy: ")
        return InvalidInput(f"--policy: {text}", field=field)
    option = _OPTIONS.get(field)
    if option is None:
        return error
    text = error.message.removeprefix(f"{field}: ")
    return InvalidInput(f"{option}: {text}", field=option)


#: Top-level policy keys: an error on one of them came from the --policy file.
_POLICY_KEYS = frozenset(
    {
        "strict",
        "margin",
        "floor",
        "overfit",
        "slices",
        "calibration",
        "fairness",
        "skew",
        "equivalence",
        "latency",
        "size",
        "stress",
        "cost",
    }
)


def validate(
    model: str = typer.Argument(..., help="The challenger: models:/NAME/VERSION or @alias."),
    against: str | None = typer.Option(
        None, "--against", help="The champion to beat, e.g. models:/NAME@champion."
    ),
    holdout: Path = typer.Option(..., "--holdout", help="Holdout rows (.parquet or .csv)."),
    label: str = typer.Option(..., "--label", help="The holdout's label column."),
    policy: Path | None = typer.Option(
        None, "--policy", help="Gate policy (YAML or JSON); defaults otherwise."
    ),
    train: Path | None = typer.Option(
        None, "--train", help="Training rows with the label: enables overfit and skew gates."
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", help="Write the Markdown summary (for a PR comment) here."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    no_record: bool = typer.Option(
        False, "--no-record", help="Do not store the report on the version."
    ),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Run the validation gates on a challenger; exit 1 when a gate fails, 2 on bad input.

    Example: keel validate models:/churn/4 --against models:/churn@champion
    --holdout holdout.parquet --label churn --policy gates.yaml --markdown gates.md
    """
    from keel.automation.gates import to_markdown

    def call() -> ValidationReport:
        try:
            return make_client(server, token).validate_model(
                model,
                holdout,
                label,
                against=against,
                policy=policy,
                training=train,
                record=not no_record,
            )
        except InvalidInput as error:
            raise _named(error) from None

    report = run_cli(call)
    if markdown is not None:
        markdown.write_text(to_markdown(report), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table(
            f"validation of {report.challenger} against {report.champion or 'no champion'}",
            ["gate", "result", "value", "threshold", "reason"],
            [
                (
                    g.name,
                    g.status,
                    None if g.value is None else f"{g.value:.4g}",
                    None if g.threshold is None else f"{g.threshold:.4g}",
                    g.reason,
                )
                for g in report.gates
            ],
        )
        verdict = "[green]passed[/]" if report.passed else "[red]failed[/]"
        console.print(f"{verdict}: decision threshold {report.decision_threshold:.4f}")
    if not report.passed:
        raise typer.Exit(1)
