"""``keel datasets``: register, list, show and fetch dataset versions."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli._context import ServerOption, TokenOption, make_client
from keel.cli._output import JsonOption, console, emit, fmt_ms, run_cli, table

datasets_app = typer.Typer(
    help="Versioned, content-addressed datasets.\n\nExample: keel datasets list",
    no_args_is_help=True,
)


@datasets_app.command("add")
def add_dataset(
    name: str = typer.Argument(..., help="Dataset name."),
    path: Path = typer.Argument(..., help="File to store (Parquet/CSV are read for schema)."),
    description: str | None = typer.Option(None, help="What this version is."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Store a file as the next version of a dataset (same content → same version).

    Example: keel datasets add telco-churn ./churn.parquet
    """
    item = run_cli(
        lambda: make_client(server, token).register_dataset(name, path, description=description)
    )
    emit(item, as_json, lambda: console.print(f"{item.name} v{item.version} {item.content_hash}"))


@datasets_app.command("list")
def list_datasets(
    name: str | None = typer.Argument(None, help="Only versions of this dataset."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List dataset versions.

    Example: keel datasets list telco-churn
    """
    items = run_cli(lambda: make_client(server, token).list_datasets(name))
    emit(
        items,
        as_json,
        lambda: table(
            "datasets",
            ["name", "version", "hash", "format", "rows", "bytes", "created"],
            [
                (
                    d.name,
                    d.version,
                    d.content_hash[:16],
                    d.format,
                    d.row_count,
                    d.size_bytes,
                    fmt_ms(d.created_at_ms),
                )
                for d in items
            ],
        ),
    )


@datasets_app.command("show")
def show_dataset(
    name: str = typer.Argument(..., help="Dataset name, or a content hash with --hash."),
    version: int | None = typer.Option(None, help="Version (default: latest)."),
    by_hash: bool = typer.Option(False, "--hash", help="Treat NAME as a content hash."),
    as_json: bool = JsonOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show one dataset version with its schema.

    Example: keel datasets show telco-churn --version 2
    """
    client = run_cli(lambda: make_client(server, token))
    item = run_cli(
        lambda: client.get_dataset_by_hash(name) if by_hash else client.get_dataset(name, version)
    )

    def render() -> None:
        console.print(f"[bold]{item.name} v{item.version}[/] {item.format} {item.row_count} rows")
        console.print(f"hash {item.content_hash}  source {item.source_uri or '-'}")
        table(
            "schema",
            ["column", "dtype", "nulls"],
            [(c.get("name"), c.get("dtype"), c.get("nulls")) for c in item.schema_],
        )

    emit(item, as_json, render)


@datasets_app.command("get")
def get_dataset(
    name: str = typer.Argument(..., help="Dataset name."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the bytes."),
    version: int | None = typer.Option(None, help="Version (default: latest)."),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Write a dataset version's bytes to a file.

    Example: keel datasets get telco-churn --version 1 -o churn-v1.parquet
    """
    data = run_cli(lambda: make_client(server, token).dataset_bytes(name, version))
    output.write_bytes(data)
    console.print(f"wrote {len(data)} bytes to {output}")
