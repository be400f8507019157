"""``keel models``: list, show, versions, alias, history, lineage, import-mlflow."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table

models_app = typer.Typer(
    help="Inspect the model registry and move aliases.\n\nExample: keel models show churn",
    no_args_is_help=True,
)


@models_app.command("list")
def list_models(
    as_json: bool = JsonOption, server: str | None = ServerOption, token: str | None = TokenOption
) -> None:
    """List registered models with their aliases.

    Example: keel models list
    """
    page = run_cli(lambda: make_client(server, token).list_models())
    emit(
        page.items,
        as_json,
        lambda: table(
            "models",
            ["name", "latest", "aliases", "status", "owner", "updated"],
            [
                (
                    m.name,
                    m.latest_version,
                    ", ".join(f"{a}→v{v}" for a, v in sorted(m.aliases.items())),
                    m.status.value,
                    m.owner,
                    fmt_ms(m.updated_at_ms),
                )
                for m in page.items
            ],
        ),
    )


@models_app.command("show")
def show_model(
    name: str = typer.Argument(..., help="Model name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a model and its versions.

    Example: keel models show churn
    """
    client = run_cli(lambda: make_client(server, token))
    model = run_cli(lambda: client.get_model(name))
    versions = run_cli(lambda: client.list_model_versions(name))

    def render() -> None:
        console.print(f"[bold]{model.name}[/] {model.description or ''} [{model.status.value}]")
        table(
            f"versions of {name}",
            ["version", "aliases", "flavor", "status", "run", "hash", "created"],
            [
                (
                    v.version,
                    ", ".join(v.aliases),
                    v.flavor,
                    v.status.value,
                    (v.run_id or "")[:12],
                    v.content_hash[:12],
                    fmt_ms(v.created_at_ms),
                )
                for v in versions
            ],
        )

    emit({"model": model, "versions": versions}, as_json, render)


@models_app.command("alias")
def set_alias(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument(..., help="Alias, e.g. champion."),
    version: int = typer.Argument(..., help="Version the alias should point at."),
    reason: str | None = typer.Option(None, help="Why (kept in the alias history)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Point an alias at a version.

    Example: keel models alias churn champion 3 --reason "AUC +0.02 on holdout"
    """
    event = run_cli(lambda: make_client(server, token).set_alias(name, alias, version, reason))
    emit(
        event,
        as_json,
        lambda: console.print(
            f"{name}@{alias}: v{event.from_version or '-'} → v{event.to_version}"
        ),
    )


@models_app.command("history")
def alias_history(
    name: str = typer.Argument(..., help="Model name."),
    alias: str | None = typer.Option(None, help="Only this alias."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Who moved which alias, when.

    Example: keel models history churn --alias champion
    """
    events = run_cli(lambda: make_client(server, token).alias_history(name, alias))
    emit(
        events,
        as_json,
        lambda: table(
            f"alias history of {name}",
            ["when", "alias", "from", "to", "actor", "reason"],
            [
                (fmt_ms(e.at_ms), e.alias, e.from_version, e.to_version, e.actor, e.reason)
                for e in events
            ],
        ),
    )


@models_app.command("lineage")
def lineage(
    ref: str = typer.Argument(..., help="models:/name/3, models:/name@alias or name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show where a version came from: run, datasets, code, environment, parents.

    Example: keel models lineage models:/churn@champion
    """
    client = run_cli(lambda: make_client(server, token))
    version = run_cli(lambda: client.resolve(ref))
    item = run_cli(lambda: client.lineage(version.name, version.version))

    def render() -> None:
        console.print(f"[bold]{item.model} v{item.version}[/] hash {item.content_hash[:16]}")
        if item.run:
            console.print(f"run {item.run['id']} ({item.run['status']})")
            console.print(f"reproducibility {item.run['reproducibility']}")
        console.print(f"code {item.code_commit or '-'} dirty={item.code_dirty}")
        console.print(f"environment {item.environment_hash or '-'}")
        table(
            "datasets",
            ["name", "context", "hash", "rows", "version"],
            [
                (
                    d["name"],
                    d["context"],
                    d["content_hash"][:16],
                    d["row_count"],
                    d["dataset_version"],
                )
                for d in item.datasets
            ],
        )
        for parent in item.parents:
            console.print(f"parent: {parent.model} v{parent.version}")

    emit(item, as_json, render)


@models_app.command("import-mlflow")
def import_mlflow(
    path: Path = typer.Argument(..., help="MLflow model directory (holds an MLmodel file)."),
    name: str = typer.Option(..., "--name", help="Registered model name."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Import an MLflow model directory (sklearn / lightgbm flavors) as a new version.

    Example: keel models import-mlflow ./mlruns/0/abc/artifacts/model --name churn
    """
    version = run_cli(lambda: make_client(server, token).import_mlflow_model(path, name))
    emit(version, as_json, lambda: console.print(f"imported as {version.uri} ({version.flavor})"))
