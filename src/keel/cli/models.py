"""``keel models``: list, show, alias, deprecate, archive, history, lineage, import, export,
economics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fail, fmt_ms, run_cli, table
from keel.cli.models_economics import economics
from keel.cli.models_exploration import exploration_app
from keel.cli.models_signals import signals_app
from keel.errors import KeelError

if TYPE_CHECKING:
    import pandas as pd

    from keel.client import Client

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


@models_app.command("deprecate")
def deprecate_version(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to mark DEPRECATED."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Mark a version deprecated: still loadable and servable, flagged in listings.

    Example: keel models deprecate churn 2
    """
    changed = run_cli(lambda: make_client(server, token).deprecate_model_version(name, version))
    emit(changed, as_json, lambda: console.print(f"{name} v{version}: {changed.status.value}"))


@models_app.command("archive")
def archive_version(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to mark ARCHIVED."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Archive a version: it can no longer take an alias.

    Example: keel models archive churn 1
    """
    changed = run_cli(lambda: make_client(server, token).archive_model_version(name, version))
    emit(changed, as_json, lambda: console.print(f"{name} v{version}: {changed.status.value}"))


@models_app.command("approve")
def approve_version(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to release."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the decision log)."),
    stage: str = typer.Option(
        "staging", "--stage", help="staging (alias challenger + rollout) or production (champion)."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Release a retrained version waiting for approval (or override its gates).

    Example: keel models approve churn 7 --reason "reviewed the slices"
    """
    done = run_cli(
        lambda: make_client(server, token).approve_model_version(name, version, reason, stage=stage)
    )
    emit(done, as_json, lambda: console.print(f"{name} v{version}: approved into {stage}"))


@models_app.command("reject")
def reject_version(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to refuse."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the decision log)."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Refuse a retrained version: it stays registered, without the challenger alias.

    Example: keel models reject churn 7 --reason "worse on new customers"
    """
    done = run_cli(lambda: make_client(server, token).reject_model_version(name, version, reason))
    emit(done, as_json, lambda: console.print(f"{name} v{version}: rejected"))


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


@models_app.command("export")
def export_model(
    ref: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION, models:/... or NAME (latest)."),
    fmt: str = typer.Option("onnx", "--format", help="Export format; only onnx."),
    quantize: str | None = typer.Option(
        None, "--quantize", help="int8: dynamic int8 quantization of MatMul/Gemm weights."
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="File to write (default: NAME-vVERSION.onnx here)."
    ),
    tolerance: float | None = typer.Option(
        None, "--tolerance", help="Largest accepted output difference (1e-4 fp32, 0.1 int8)."
    ),
    samples: int = typer.Option(
        1000, "--samples", min=1, max=100_000, help="Training-like rows in the parity check."
    ),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Export a version as one self-contained ONNX file, after a parity check.

    The file carries the signature and the keel model/version in its metadata.

    Parity: the input example plus training rows; written only if it passes, else exit 2.

    Prints the file size and onnxruntime vs original latency on 1 and 1,000 rows.

    Example: keel models export churn@champion --format onnx --quantize int8 -o churn.onnx
    """
    from keel.errors import InvalidInput, NotFound
    from keel.serving.export import export_onnx

    if fmt != "onnx":
        fail(InvalidInput(f"unknown format {fmt!r}; supported: onnx", field="format"))
    client = run_cli(lambda: make_client(server, token))
    try:
        item = client.resolve(ref)
    except NotFound as exc:
        # A model that does not exist is bad input to this command: exit 2 (issue 4).
        fail(InvalidInput(exc.message, field=exc.field or "model"))
    except KeelError as exc:
        fail(exc)
    directory = run_cli(lambda: client.transport.model_dir(item))
    target = output or Path(f"{item.name}-v{item.version}.onnx")
    result = run_cli(
        lambda: export_onnx(
            directory,
            target,
            model=item.name,
            version=item.version,
            quantize=quantize,
            tolerance=tolerance,
            data=_training_data(client, item.name, item.version),
            samples=samples,
            allow_pickle=client.settings.allow_pickle,
            trusted_classes=client.settings.trusted_model_class_names,
        )
    )

    def render() -> None:
        console.print(
            f"[green]✓[/] {result.model} v{result.version} ({result.flavor}, "
            f"{result.converter}) → {result.path}: {result.size_bytes:,} bytes, {result.precision}"
        )
        if result.quantization_note:
            console.print(f"[yellow]note:[/] {result.quantization_note}")
        parity = result.parity
        console.print(
            f"parity on {parity.rows} rows: max |Δ {parity.metric}| = {parity.max_abs_diff:.3g} "
            f"(tolerance {parity.tolerance:g}), {parity.label_mismatches} label mismatches"
        )
        if result.latency is not None:
            lat = result.latency
            table(
                "latency (median ms per predict call)",
                ["rows", "original", "onnxruntime", "speed-up", "onnxruntime run only"],
                [
                    (
                        1,
                        f"{lat.original_1_row_ms:.3f}",
                        f"{lat.onnx_1_row_ms:.3f}",
                        f"{lat.original_1_row_ms / lat.onnx_1_row_ms:.1f}x",
                        f"{lat.onnx_run_1_row_ms:.3f}",
                    ),
                    (
                        1000,
                        f"{lat.original_1000_rows_ms:.3f}",
                        f"{lat.onnx_1000_rows_ms:.3f}",
                        f"{lat.original_1000_rows_ms / lat.onnx_1000_rows_ms:.1f}x",
                        f"{lat.onnx_run_1000_rows_ms:.3f}",
                    ),
                ],
            )
            console.print(
                "original and onnxruntime: called with a DataFrame, as the gateway does; "
                "run only: session.run on ready tensors, as an edge runtime would"
            )

    emit(result.to_dict(), as_json, render)


def _training_data(client: Client, name: str, version: int) -> pd.DataFrame | None:
    """The version's training dataset (for the parity check), or None if it has none."""
    try:
        lineage = client.lineage(name, version)
        for item in lineage.datasets:
            if item.get("context") == "training":
                return client.load_dataset(item["name"], item.get("dataset_version"))
    except KeelError:
        return None  # no run or no readable dataset: the parity check uses the example
    return None


models_app.command("economics")(economics)
models_app.add_typer(signals_app, name="signals")
models_app.add_typer(exploration_app, name="exploration")
