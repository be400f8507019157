"""``keel experiments`` and ``keel runs``."""

from __future__ import annotations

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table
from keel.tracking.models import Run

experiments_app = typer.Typer(
    help="List and inspect experiments.\n\nExample: keel experiments list --json",
    no_args_is_help=True,
)
runs_app = typer.Typer(
    help="List, inspect and search runs.\n\nExample: keel runs list churn --json",
    no_args_is_help=True,
)


@experiments_app.command("list")
def list_experiments(
    max_results: int = typer.Option(100, help="Page size."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List experiments.

    Example: keel experiments list --json
    """
    page = run_cli(lambda: make_client(server, token).list_experiments(max_results))
    emit(
        page.items,
        as_json,
        lambda: table(
            "experiments",
            ["id", "name", "created", "description"],
            [(e.id, e.name, fmt_ms(e.created_at_ms), e.description) for e in page.items],
        ),
    )


@experiments_app.command("show")
def show_experiment(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show one experiment.

    Example: keel experiments show churn
    """
    item = run_cli(lambda: make_client(server, token).get_experiment(experiment))
    emit(item, as_json, lambda: console.print(item.model_dump()))


def _runs_table(title: str, runs: list[Run]) -> None:
    metric_keys = sorted({k for r in runs for k in r.metrics})[:6]
    param_keys = sorted({k for r in runs for k in r.params})[:4]
    rows = []
    for r in runs:
        metrics = [f"{r.metrics[k]:.4g}" if k in r.metrics else None for k in metric_keys]
        params = [r.params.get(k) for k in param_keys]
        rows.append([r.id[:12], r.name, r.status.value, fmt_ms(r.start_time_ms), *params, *metrics])
    columns = ["run", "name", "status", "started", *param_keys, *metric_keys]
    table(title, columns, rows)


@runs_app.command("list")
def list_runs(
    experiment: str = typer.Argument(..., help="Experiment id or name."),
    max_results: int = typer.Option(50, help="Page size."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List the newest runs of an experiment.

    Example: keel runs list churn --max-results 10
    """
    page = run_cli(
        lambda: make_client(server, token).search_runs(experiment, max_results=max_results)
    )
    emit(page.items, as_json, lambda: _runs_table(f"runs of {experiment}", page.items))


@runs_app.command("search")
def search_runs(
    experiment: list[str] = typer.Option(
        ..., "--experiment", "-e", help="Experiment(s) to search."
    ),
    filter: str | None = typer.Option(None, "--filter", "-f", help="Filter expression."),
    order_by: list[str] = typer.Option([], "--order-by", "-o", help="e.g. 'metrics.auc DESC'."),
    max_results: int = typer.Option(50, help="Page size."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Search runs with a filter expression.

    Example: keel runs search -e churn -f "metrics.auc > 0.8 and params.model = 'lgbm'"
    -o "metrics.auc DESC"
    """
    page = run_cli(
        lambda: make_client(server, token).search_runs(
            experiment, filter=filter, order_by=order_by, max_results=max_results
        )
    )
    emit(page.items, as_json, lambda: _runs_table("matching runs", page.items))


@runs_app.command("show")
def show_run(
    run_id: str = typer.Argument(..., help="Run id."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a run: params, metrics, tags, inputs, environment, reproducibility.

    Example: keel runs show 3f2a... --json
    """
    run = run_cli(lambda: make_client(server, token).get_run(run_id))

    def render() -> None:
        console.print(f"[bold]run {run.id}[/] {run.name or ''} [{run.status.value}]")
        took = "-" if run.duration_ms is None else f"{run.duration_ms / 1000:.3f} s"
        console.print(
            f"started {fmt_ms(run.start_time_ms)}  ended {fmt_ms(run.end_time_ms)}  took {took}"
        )
        table("params", ["key", "value"], sorted(run.params.items()))
        table("metrics", ["key", "value"], sorted(run.metrics.items()))
        if run.tags:
            table("tags", ["key", "value"], sorted(run.tags.items()))
        if run.inputs:
            table(
                "inputs",
                ["name", "context", "hash", "rows", "dataset version"],
                [
                    (i.name, i.context, i.content_hash[:16], i.row_count, i.dataset_version)
                    for i in run.inputs
                ],
            )
        console.print(f"code {run.code_commit or '-'} dirty={run.code_dirty}  seed={run.seed}")
        console.print(f"reproducibility {run.reproducibility()}")

    shown = {
        **run.model_dump(mode="json", by_alias=True),
        "duration_ms": run.duration_ms,
        "reproducibility": run.reproducibility(),
    }
    emit(shown, as_json, render)
