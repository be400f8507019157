"""The ``keel`` command."""

from __future__ import annotations

from typing import Any

import typer
from typer import _click as click  # typer's vendored click: the group's own Context type

from keel.cli._lazy import LazyCommand, LazyGroup

# Every subcommand, imported only when it runs (#15.14: `keel version` must not pay for
# pandas, scipy and the stores). To add one, write its module under keel/cli/ with a
# `typer.Typer(help="…\n\nExample: …")` (or a plain function for a single command) and add
# a row here: name → (module, attribute, the first line of its help). The row's help is
# what `keel --help` lists; tests/cli/test_lazy_cli.py checks it matches the real one.
# Keep heavy imports (pandas, numpy, scipy, DuckDB, …) out of the module's top level
# where a command can do without them: tests/cli/test_lazy_cli.py measures the imports.
COMMANDS: dict[str, LazyCommand] = {
    "server": LazyCommand(
        "keel.cli.system",
        "server",
        "Run the REST API (OpenAPI at /docs, /healthz, /readyz, /metrics).",
    ),
    "audit": LazyCommand(
        "keel.cli.users",
        "audit",
        "Show the audit log, newest first: who changed what, when, from where.",
    ),
    "db": LazyCommand("keel.cli.system", "db_app", "Manage the metadata database schema."),
    "experiments": LazyCommand(
        "keel.cli.tracking", "experiments_app", "List and inspect experiments."
    ),
    "runs": LazyCommand("keel.cli.tracking", "runs_app", "List, inspect and search runs."),
    "models": LazyCommand(
        "keel.cli.models", "models_app", "Inspect the model registry and move aliases."
    ),
    "datasets": LazyCommand(
        "keel.cli.datasets", "datasets_app", "Versioned, content-addressed datasets."
    ),
    "features": LazyCommand(
        "keel.cli.features",
        "features_app",
        "Feature store: definitions, materialisation, online lookups, skew, freshness.",
    ),
    "users": LazyCommand("keel.cli.users", "users_app", "Manage users (API authentication)."),
    "tokens": LazyCommand("keel.cli.users", "tokens_app", "Create, list and revoke API tokens."),
    "predictions": LazyCommand(
        "keel.cli.predictions",
        "predictions_app",
        "Read and compact the prediction log the gateway writes.",
    ),
    "cache": LazyCommand(
        "keel.cli.serving", "cache_app", "Manage the prediction cache of running gateways."
    ),
    "monitor": LazyCommand(
        "keel.cli.monitor", "monitor_app", "Monitoring: drift, data quality, performance."
    ),
    "worker": LazyCommand(
        "keel.cli.jobs",
        "worker",
        "Run queued and scheduled jobs until interrupted (any number of workers may run).",
    ),
    "jobs": LazyCommand(
        "keel.cli.jobs", "jobs_app", "Queued and scheduled jobs: list, inspect, cancel."
    ),
    "deploy": LazyCommand(
        "keel.cli.deploy",
        "deploy_app",
        "Deployments: shadow, canary, A/B and blue-green rollouts with automatic rollback.",
    ),
    "decisions": LazyCommand(
        "keel.cli.decisions",
        "decisions_app",
        "Show the decision log, newest first: what was decided, why, with which numbers.",
    ),
    "validate": LazyCommand(
        "keel.cli.validate",
        "validate",
        "Run the validation gates on a challenger; exit 1 when a gate fails, 2 on bad input.",
    ),
    "triggers": LazyCommand(
        "keel.cli.triggers",
        "triggers_app",
        "Retraining triggers: when to retrain a model, and what each evaluation saw.",
    ),
    "economics": LazyCommand(
        "keel.cli.economics",
        "economics_app",
        "Retraining economics: how often retraining pays for itself.",
    ),
}


class _KeelGroup(LazyGroup):
    LAZY_COMMANDS = COMMANDS

    def invoke(self, ctx: click.Context) -> Any:
        # The net under every command: a KeelError that escaped a command's own run_cli
        # (a read-only home, a corrupt or newer database, #15.13) is one line and its
        # exit code, never a traceback.
        from keel.errors import KeelError

        try:
            return super().invoke(ctx)
        except KeelError as error:
            from keel.cli._output import fail

            fail(error)


app = typer.Typer(
    name="keel",
    cls=_KeelGroup,
    help="keel keeps machine-learning models correct in production.\n\nExample: keel demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _close_clients_at_exit(ctx: typer.Context) -> None:
    # Commands open clients through make_client; close them (connection pools,
    # SQLite engines) when the command ends, also on errors.
    from keel.cli._context import close_clients

    ctx.call_on_close(close_clients)


@app.command("demo")
def demo(
    home: str | None = typer.Option(
        None, help="Keel home for the demo (default: a fresh temporary directory)."
    ),
    keep: bool = typer.Option(False, help="Keep the temporary home for inspection."),
) -> None:
    """Walk the loop on the IBM telco churn table: track, register, alias, load, score.

    Example: keel demo
    """
    from keel.demo.churn import run_demo

    run_demo(home=home, keep=keep)


@app.command("version")
def version() -> None:
    """Print keel's version.

    Example: keel version
    """
    from keel import __version__

    typer.echo(__version__)


def main() -> None:
    """Entry point of the console script."""
    from pydantic import ValidationError

    try:
        app()
    except ValidationError as exc:
        # A bad KEEL_* setting: one line per setting with its bounds, exit 2, no traceback.
        from keel.cli._output import settings_failure

        settings_failure(exc)
