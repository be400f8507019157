"""``keel predictions``: read the prediction log and its labels (through ``keel.Client``,
embedded or ``--server``) and compact the log's files (on the machine that holds them)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.config import Settings

predictions_app = typer.Typer(
    help="Read and compact the prediction log the gateway writes.\n\n"
    "Example: keel predictions list --model churn --since 1h",
    no_args_is_help=True,
)

ModelOption = typer.Option(None, "--model", help="Only this registered model.")
VersionOption = typer.Option(None, "--version", min=1, help="Only this model version.")
DeploymentOption = typer.Option(None, "--deployment", help="Only rows served by this deployment.")
ArmOption = typer.Option(None, "--arm", help="Only rows of this deployment arm.")
SinceOption = typer.Option(
    "24h", "--since", help="Window start: ISO-8601 time, or an age like 15m, 2h, 7d."
)
UntilOption = typer.Option(None, "--until", help="Window end (exclusive); default now.")
LimitOption = typer.Option(20, "--limit", min=1, max=10_000, help="Newest rows to show.")
ColumnsOption = typer.Option(None, "--column", "-c", help="Only this column (repeatable).")


def _short(row: dict[str, Any]) -> list[Any]:
    probabilities = row.get("probabilities")
    latency = row.get("latency_ms")
    return [
        str(row.get("ts", ""))[:19].replace("T", " "),
        row.get("model"),
        row.get("version"),
        row.get("request_id"),
        row.get("output"),
        f"{max(probabilities):.3f}" if probabilities else None,
        f"{latency:.2f}" if latency is not None else None,
        {True: "yes", False: "no"}.get(row.get("cached")),  # type: ignore[arg-type]
        {True: "yes", False: "no"}.get(row.get("fallback")),  # type: ignore[arg-type]
        row.get("arm"),
    ]


_COLUMNS = ["time", "model", "v", "request", "output", "p(max)", "ms", "cached", "fallback", "arm"]


@predictions_app.command("list")
def list_predictions(
    model: str | None = ModelOption,
    version: int | None = VersionOption,
    deployment: str | None = DeploymentOption,
    arm: str | None = ArmOption,
    since: str = SinceOption,
    until: str | None = UntilOption,
    columns: list[str] | None = ColumnsOption,
    limit: int = LimitOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show the newest logged predictions of a time window, newest first.

    Embedded it reads the log's files; with --server, GET /v1/predictions.

    Example: keel predictions list --model churn --version 3 --since 2h --limit 50
    """
    page = run_cli(
        lambda: make_client(server, token).prediction_page(
            model,
            version,
            deployment=deployment,
            arm=arm,
            since=since,
            until=until,
            columns=columns or None,
            limit=limit,
        )
    )
    rows = list(reversed(page.rows))
    more = " (older rows left out)" if page.truncated else ""

    def render() -> None:
        if columns:
            names = list(rows[0]) if rows else list(columns)
            table(
                f"predictions ({len(rows)} newest{more})", names, [list(r.values()) for r in rows]
            )
        else:
            table(f"predictions ({len(rows)} newest{more})", _COLUMNS, [_short(r) for r in rows])

    emit({"truncated": page.truncated, "rows": rows}, as_json, render)


@predictions_app.command("labels")
def list_labels(
    model: str | None = ModelOption,
    version: int | None = VersionOption,
    deployment: str | None = DeploymentOption,
    arm: str | None = ArmOption,
    since: str = SinceOption,
    until: str | None = UntilOption,
    as_of: str | None = typer.Option(None, "--as-of", help="Only labels received by then."),
    limit: int = LimitOption,
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show the newest labelled predictions (prediction, label, label delay), newest first.

    Embedded it reads the log and feedback files; with --server, GET /v1/feedback.

    Example: keel predictions labels --model churn --since 7d --as-of 2026-01-31
    """
    page = run_cli(
        lambda: make_client(server, token).label_page(
            model,
            version,
            deployment=deployment,
            arm=arm,
            since=since,
            until=until,
            limit=limit,
            as_of=as_of,
        )
    )
    rows = list(reversed(page.rows))
    more = " (older rows left out)" if page.truncated else ""

    def render() -> None:
        table(
            f"labelled predictions ({len(rows)} newest{more})",
            ["time", "model", "v", "request", "output", "label", "delay s"],
            [
                (
                    str(r.get("ts", ""))[:19].replace("T", " "),
                    r.get("model"),
                    r.get("version"),
                    r.get("request_id"),
                    r.get("output"),
                    r.get("label"),
                    r.get("label_delay_s"),
                )
                for r in rows
            ],
        )

    emit({"truncated": page.truncated, "rows": rows}, as_json, render)


@predictions_app.command("compact")
def compact_predictions(
    model: str | None = ModelOption,
    version: int | None = VersionOption,
    grace_s: float = typer.Option(
        300.0, "--grace", min=0, help="Only hours that ended at least this many seconds ago."
    ),
    include_open: bool = typer.Option(
        False, "--include-open", help="Also merge the segments of hours still being written."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Merge the small segments of each closed hour into one Parquet file.

    Safe while the gateway writes and others read: readers switch to the merged file at once.

    Example: keel predictions compact --model churn --grace 600
    """
    from keel.serving.predlog import log_root
    from keel.serving.predquery import compact

    settings = run_cli(Settings)
    report = run_cli(
        lambda: compact(
            log_root(settings),
            model=model,
            version=version,
            grace_s=grace_s,
            fsync=settings.prediction_log_fsync,
            include_open=include_open,
        )
    )

    def render() -> None:
        console.print(
            f"compacted {report.partitions} hour partition(s): {report.files_in} files → "
            f"{report.files_out}, {report.rows:,} rows, "
            f"{report.bytes_in:,} → {report.bytes_out:,} bytes"
        )
        for path in report.quarantined:
            console.print(f"[yellow]quarantined unreadable segment[/] {path}")
        if report.skipped_busy:
            console.print(f"{report.skipped_busy} partition(s) busy (another compaction)")

    emit(asdict(report), as_json, render)
