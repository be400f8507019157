"""Rendering for the CLI: Rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from keel.errors import InvalidInput, KeelError

__all__ = ["JsonOption", "console", "emit", "fail", "fmt_ms", "run_cli", "table"]

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def emit(value: Any, as_json: bool, render: Callable[[], None]) -> None:
    """Print ``value`` as JSON when asked, else call ``render``."""
    if as_json:
        typer.echo(json.dumps(_plain(value), indent=2, default=str))
    else:
        render()


def fmt_ms(ms: int | None) -> str:
    """Milliseconds since the epoch as a short UTC time."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Rich table."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        # escape: cells hold user data; "[/x]" must print, not be read as Rich markup
        grid.add_row(*("-" if v is None else escape(str(v)) for v in row))
    console.print(grid)


def fail(error: KeelError) -> None:
    """Print an error the way people read it and exit with its code (2 = bad input)."""
    field = f" (field: {error.field})" if error.field else ""
    # escape: messages quote user input (a run id "[/x]" would be a Rich markup error);
    # soft_wrap: one line per error, so scripts can grep stderr
    err_console.print(f"[bold red]error:[/] {escape(error.message + field)}", soft_wrap=True)
    raise typer.Exit(error.exit_code)


def settings_failure(exc: ValidationError) -> NoReturn:
    """Report a ``Settings`` validation error as ``error: KEEL_X=value: bounds (reason)``
    lines and exit 2; any other model's error is re-raised (it is a bug, not bad input)."""
    from keel._models import error_reason
    from keel.config import Settings

    if exc.title != Settings.__name__:
        raise exc
    for item in exc.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        field = Settings.model_fields.get(name)
        bounds = [
            f"{op} {getattr(rule, attr)}"
            for rule in (field.metadata if field else [])
            for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if getattr(rule, attr, None) is not None
        ]
        rule = f"must be {' and '.join(bounds)}; " if bounds else ""
        line = f"KEEL_{name.upper()}={item.get('input')!s}: {rule}{error_reason(item)}"
        err_console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    raise SystemExit(2)


def run_cli(call: Callable[[], T]) -> T:
    """Run ``call``; a KeelError becomes a one-line message and its exit code, no traceback."""
    try:
        return call()
    except KeelError as error:
        fail(error)
        raise AssertionError("unreachable") from error


def as_option(error: KeelError, options: Mapping[str, str]) -> KeelError:
    """An InvalidInput naming an SDK argument (``routing_key``, or an item of it such as
    ``versions[1]``) reworded to name the command-line option that set it
    (``--routing-key``), so the user is told what they typed; any other error unchanged."""
    if not isinstance(error, InvalidInput):
        return error
    field = error.field or ""
    option = options.get(field) or options.get(field.split("[")[0].split(".")[0])
    if option is None:
        return error
    return InvalidInput(f"{option}: {error.message.split(': ', 1)[-1]}", field=option)
