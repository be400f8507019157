"""``keel monitor`` commands on monitor runs: run, list, report, feedback, diagnose.

Registered on ``monitor_app`` by :mod:`keel.cli.monitor`. Like every CLI module, no
heavy library is imported at module level (tests/cli/test_lazy_cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.client import Client
    from keel.monitoring.models import MonitorRun

__all__ = ["diagnose", "feedback", "report", "run_monitor", "runs"]


def _print_run(run: MonitorRun) -> None:
    style = {"ok": "green", "alert": "bold red"}.get(run.status, "yellow")
    console.print(
        f"[{style}]{run.status}[/] {run.monitor} · {run.model} v{run.version or '*'} · "
        f"{run.n_current} predictions, {run.n_labelled} labelled · {run.seconds:.2f} s · "
        f"run {run.id}"
    )
    for key in ("drifted", "quality_errors", "reason"):
        if run.summary.get(key):
            console.print(f"  {key}: {run.summary[key]}")
    performance = run.results.get("performance") or {}
    estimated = run.results.get("estimated") or {}
    if performance.get("accuracy") is not None or estimated.get("accuracy") is not None:
        console.print(
            f"  accuracy realised {performance.get('accuracy')} · estimated "
            f"{estimated.get('accuracy')}"
        )


def run_monitor(
    name: str = typer.Argument(..., help="Monitor name."),
    window_end: str | None = typer.Option(
        None, "--window-end", help="Window end: ISO-8601 time or an age like 7d; default now."
    ),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Count only labels received by then (ISO-8601 time or an age)."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Evaluate a monitor over its window (ending now, or at --window-end) and store the
    result; exit 1 on alert.

    Example: keel monitor run churn-weekly --window-end 2026-11-30T00:00:00Z
    """
    result = run_cli(
        lambda: make_client(server, token).run_monitor(name, window_end=window_end, as_of=as_of)
    )
    emit(result, as_json, lambda: _print_run(result))
    if result.status == "alert":
        raise typer.Exit(1)


def runs(
    name: str = typer.Argument(..., help="Monitor name."),
    limit: int = typer.Option(20, min=1, max=1000, help="How many, newest first."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List stored runs of a monitor.

    Example: keel monitor runs churn-weekly --limit 5
    """
    from keel.cli._output import fmt_ms

    items = run_cli(lambda: make_client(server, token).monitor_runs(name, limit))
    emit(
        items,
        as_json,
        lambda: table(
            f"runs of {name}",
            ["run", "status", "window end", "version", "current", "labelled", "drifted", "seconds"],
            [
                (
                    r.id,
                    r.status,
                    fmt_ms(r.window_end_ms),
                    r.version,
                    r.n_current,
                    r.n_labelled,
                    ", ".join(r.summary.get("drifted", [])) or "-",
                    f"{r.seconds:.2f}",
                )
                for r in items
            ],
        ),
    )


def _run_or_latest(client: Client, name: str, run_id: str | None) -> str:
    """``run_id``, or the id of the monitor's latest run."""
    if run_id is not None:
        return run_id
    latest = client.monitor_runs(name, 1)
    if not latest:
        raise InvalidInput(f"monitor {name} has no runs yet", field="run_id")
    return latest[0].id


def report(
    name: str = typer.Argument(..., help="Monitor name."),
    run_id: str | None = typer.Argument(None, help="Run id (default: the latest run)."),
    output: Path = typer.Option(Path("monitor-report.html"), "--output", "-o", help="HTML file."),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Write a self-contained HTML report of a run (distribution plots, verdicts, metrics).

    Example: keel monitor report churn-weekly -o report.html
    """

    def run() -> str:
        client = make_client(server, token)
        return client.monitor_report(name, _run_or_latest(client, name, run_id))

    html = run_cli(run)
    output.write_text(html, encoding="utf-8")
    console.print(f"wrote {output}")


def feedback(
    path: Path = typer.Argument(
        ..., help="CSV/Parquet with label and request_id or entity_key + event_time columns."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Upload ground-truth labels in bulk (idempotent; unknown request ids are counted).

    Example: keel monitor feedback labels.parquet
    """
    totals = run_cli(lambda: make_client(server, token).log_feedback_file(path))
    emit(
        totals,
        as_json,
        lambda: console.print(
            f"{totals['accepted']} labels stored, {totals['duplicates']} duplicates, "
            f"{totals['unknown']} for unknown request ids"
        ),
    )


def diagnose(
    name: str = typer.Argument(..., help="Monitor name."),
    run_id: str | None = typer.Argument(None, help="Run id (default: the latest run)."),
    slice_by: list[str] = typer.Option([], "--slice-by", help="Column for worst segments."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Explain a bad window: data drift, concept drift, a data-quality break or a stale source.

    Example: keel monitor diagnose churn-weekly --slice-by contract
    """

    def run() -> dict[str, Any]:
        client = make_client(server, token)
        return client.diagnose_monitor_run(name, _run_or_latest(client, name, run_id), slice_by)

    result = run_cli(run)

    def render() -> None:
        scores = ", ".join(
            f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in result["scores"].items()
        )
        console.print(f"verdict: [bold]{result['verdict']}[/] ({scores})")
        for line in result["evidence"]:
            console.print(f"  · {line}")
        for item in result["attributions"][:5]:
            console.print(
                f"  SHAP {item['feature']}: {item['reference']:.4f} → {item['current']:.4f}"
            )
        for note in result["notes"]:
            console.print(f"  note: {note}")

    emit(result, as_json, render)
