"""``keel decisions``: the decision log, its open incidents, and resolving one with a check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.cli.deploy import _decision_table, _records
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.decisions.models import Decision

decisions_app = typer.Typer(
    help="Show the decision log, newest first: what was decided, why, with which numbers.\n\n"
    "Example: keel decisions --model churn --since 7d --json",
    invoke_without_command=True,
)


@decisions_app.callback()
def decisions(
    ctx: typer.Context,
    model: str | None = typer.Option(None, help="Only this model's decisions."),
    kind: str | None = typer.Option(None, help="Only this kind (rollback, promotion, gate, ...)."),
    deployment: str | None = typer.Option(None, help="Only this deployment's."),
    since: str | None = typer.Option(None, help="Only newer than 30m / 2h / 7d / a date."),
    open_only: bool = typer.Option(
        False, "--open", help="Only incidents nobody has resolved yet (keel decisions resolve)."
    ),
    limit: int = typer.Option(100, min=1, max=10_000, help="Most entries shown."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show the decision log, newest first: what was decided, why, with which numbers.

    Example: keel decisions --model churn --since 7d --json
    """
    if ctx.invoked_subcommand is not None:
        return
    items = run_cli(
        lambda: make_client(server, token).decisions(
            model=model,
            kind=kind,
            since=since,
            deployment=deployment,
            limit=limit,
            open=True if open_only else None,
        )
    )
    if open_only:
        emit(_records(items), as_json, lambda: _incident_table(items))
    else:
        emit(_records(items), as_json, lambda: _decision_table("decisions", items))


def _incident_table(items: list[Decision]) -> None:
    from keel.cli._output import fmt_ms

    table(
        "open incidents",
        ["id", "time", "model", "kind", "summary"],
        [(d.id, fmt_ms(d.at_ms), d.model, d.kind, d.summary) for d in items],
    )


def _gate(text: str | None) -> dict[str, Any] | None:
    """``--gate``: YAML/JSON text, or ``@file`` holding it (a part of a gate policy)."""
    if text is None:
        return None
    from pathlib import Path

    from keel._documents import load_document

    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(
                f"check.gate: cannot read {text[1:]}: {exc.strerror}", field="check.gate"
            ) from None
    # YAML reads JSON as well, and flow style ({floor: {min_auc: 0.82}}) is easiest to type
    value = load_document(text, field="check.gate", json_when_braced=False)
    if not isinstance(value, dict):
        raise InvalidInput(
            "check.gate: expected a mapping such as {floor: {min_auc: 0.82}}", field="check.gate"
        )
    return value


@decisions_app.command("resolve")
def resolve(
    decision_id: int = typer.Argument(
        ..., help="The incident's decision id (keel decisions --open)."
    ),
    monitor: str | None = typer.Option(None, help="Add the --rule to this monitor of the model."),
    rule: str | None = typer.Option(
        None, help="Monitor rule: 'statistic(feature) op threshold', e.g. 'null_share(x) > 0.01'."
    ),
    gate: str | None = typer.Option(
        None,
        help="Gate rule: part of a gate policy, YAML/JSON or @file: '{floor: {min_auc: 0.82}}'.",
    ),
    no_check_reason: str | None = typer.Option(
        None, help="Why no check can prevent it (admins and owners of the model only)."
    ),
    note: str | None = typer.Option(None, help="What was found and done."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Resolve an incident with a permanent check: a monitor rule or a gate rule.

    Example: keel decisions resolve 42 --monitor churn --rule 'null_share(TotalCharges) > 0.01'
    """
    record = run_cli(
        lambda: make_client(server, token).resolve_decision(
            decision_id,
            monitor=monitor,
            rule=rule,
            gate=_gate(gate),
            no_check_reason=no_check_reason,
            note=note,
        )
    )
    if as_json:
        emit(_records([record])[0], True, lambda: None)
        return
    console.print(f"decision {record.id}: {record.summary}")
