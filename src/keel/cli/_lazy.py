"""A click group that imports a subcommand's module only when that subcommand runs.

Typer builds every command eagerly, so ``keel version`` used to import the whole
platform (pandas, scipy, SQLAlchemy, …) before printing a string (#15.14). The top
level ``keel`` group is this class instead: each subcommand is a row of a static
table (module, attribute, one-line help), imported on first use. ``keel --help``
lists the rows' static help without importing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer

# typer vendors click (typer._click) and builds its commands from that copy; the group,
# its context and the placeholder command must be of those classes, not the `click` package.
from typer import _click as click
from typer.core import TyperCommand, TyperGroup

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a subcommand lives: ``module:attribute`` (a ``typer.Typer`` or a function)."""

    module: str
    attribute: str
    help: str  # the first line of the command's help, shown by ``keel --help``

    def load(self, name: str) -> click.Command:
        """Import the module and build the click command."""
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            command: click.Command = typer.main.get_group(target)
        else:
            # A plain function: register it alone on a throwaway Typer, which then
            # builds a single click command (not a group) with Typer's parameter parsing.
            single = typer.Typer()
            single.command(name)(target)
            command = typer.main.get_command(single)
        command.name = name
        return command


class _Commands(MutableMapping[str, click.Command]):
    """The group's ``commands``: eager ones as given, lazy ones built on first lookup.

    Listing names never imports; reading a value does. So click's own lookups and
    code that walks ``group.commands`` (the docs tests) keep working unchanged.
    """

    def __init__(self, eager: Mapping[str, click.Command], lazy: Mapping[str, LazyCommand]):
        self._loaded: dict[str, click.Command] = dict(eager)
        self._lazy = dict(lazy)

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            self._loaded[name] = self._lazy[name].load(name)  # KeyError when unknown
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        self._lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._lazy
        yield from (name for name in self._loaded if name not in self._lazy)

    def __len__(self) -> int:
        return len(set(self._lazy) | set(self._loaded))

    def __contains__(self, name: object) -> bool:
        return name in self._lazy or name in self._loaded

    def short_help(self, name: str) -> str | None:
        """The static help of a lazy command not imported yet, else ``None``."""
        if name in self._lazy and name not in self._loaded:
            return self._lazy[name].help
        return None


class LazyGroup(TyperGroup):
    """A ``TyperGroup`` whose subcommands come from ``LAZY_COMMANDS`` (set by a subclass)."""

    LAZY_COMMANDS: Mapping[str, LazyCommand] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands, self.LAZY_COMMANDS)
        self._listing = False

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # While the help lists subcommands, get_command answers placeholders carrying
        # the static help, so "keel --help" imports no subcommand module.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if self._listing and isinstance(self.commands, _Commands):
            text = self.commands.short_help(cmd_name)
            if text is not None:
                return TyperCommand(cmd_name, help=text)
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)
