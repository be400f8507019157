"""The ``keel`` command."""

from __future__ import annotations

import typer

from keel.cli._context import close_clients
from keel.cli.datasets import datasets_app
from keel.cli.features import features_app
from keel.cli.models import models_app
from keel.cli.monitor import monitor_app
from keel.cli.predictions import predictions_app
from keel.cli.serving import cache_app
from keel.cli.system import db_app, server
from keel.cli.tracking import experiments_app, runs_app
from keel.cli.users import audit, tokens_app, users_app

app = typer.Typer(
    name="keel",
    help="keel keeps machine-learning models correct in production.\n\nExample: keel demo",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _close_clients_at_exit(ctx: typer.Context) -> None:
    # Commands open clients through make_client; close them (connection pools,
    # SQLite engines) when the command ends, also on errors.
    ctx.call_on_close(close_clients)


app.command("server")(server)
app.add_typer(db_app, name="db")
app.add_typer(experiments_app, name="experiments")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")
app.add_typer(features_app, name="features")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.command("audit")(audit)
app.add_typer(predictions_app, name="predictions")
app.add_typer(cache_app, name="cache")
app.add_typer(monitor_app, name="monitor")


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
    app()
