"""``keel predictions``: read and compact the prediction log (local files, no server)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict
from typing import Any

import typer

from keel.cli._output import JsonOption, console, emit, run_cli, table
from keel.config import Settings

predictions_app = typer.Typer(
    help="Read and compact the prediction log the gateway writes.\n\n"
    "Example: keel predictions list --model churn --since 1h",
    no_args_is_help=True,
)

ModelOption = typer.Option(None, "--model", help="Only this registered model.")
VersionOption = typer.Option(None, "--version", min=1, help="Only this model version.")


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _cell(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cell(v) for v in value]
    return value


@predictions_app.command("list")
def list_predictions(
    model: str | None = ModelOption,
    version: int | None = VersionOption,
    since: str = typer.Option(
        "24h", "--since", help="Window start: ISO-8601 time, or an age like 15m, 2h, 7d."
    ),
    until: str | None = typer.Option(None, "--until", help="Window end (exclusive); default now."),
    limit: int = typer.Option(20, "--limit", min=1, max=100_000, help="Newest rows to show."),
    as_json: bool = JsonOption,
) -> None:
    """Show the newest logged predictions of a time window.

    Example: keel predictions list --model churn --version 3 --since 2h --limit 50
    """
    from keel.serving.predquery import parse_time, predictions

    settings = run_cli(Settings)
    start = run_cli(lambda: parse_time(since, "since"))
    end = run_cli(lambda: parse_time(until, "until"))
    rows_table = run_cli(lambda: predictions(model, version, start, end, settings=settings))
    total = rows_table.num_rows
    shown = rows_table.slice(max(0, total - limit)).to_pylist()
    rows = [{k: _cell(v) for k, v in row.items()} for row in reversed(shown)]

    def render() -> None:
        table(
            f"predictions ({len(rows)} newest of {total} in the window)",
            [
                "time",
                "model",
                "v",
                "request",
                "output",
                "p(max)",
                "ms",
                "cached",
                "fallback",
                "arm",
            ],
            [
                (
                    str(r["ts"])[:19].replace("T", " "),
                    r["model"],
                    r["version"],
                    r["request_id"],
                    r.get("output"),
                    f"{max(r['probabilities']):.3f}" if r.get("probabilities") else None,
                    f"{r['latency_ms']:.2f}" if r.get("latency_ms") is not None else None,
                    "yes" if r["cached"] else "no",
                    "yes" if r["fallback"] else "no",
                    r.get("arm"),
                )
                for r in rows
            ],
        )

    emit({"total": total, "rows": rows}, as_json, render)


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
