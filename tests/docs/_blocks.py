"""Fenced code blocks of README.md and docs/*.md, their markers, and how each one is checked.

The convention (docs/operations.md, "Docs examples are tests"):

- ```python blocks run, in document order, in one fresh process per Markdown file: the blocks of
  one file share a namespace, after a prelude of small fixtures (``tests/docs/_world.py``).
- ```bash / ```sh / ```console lines run in the same process, in the same order: ``keel ...``
  through the installed entry point's function, ``curl`` as a real process; ``keel server``
  starts a real server on a free port. ``8080`` addresses are rewritten to that server.
- a YAML/JSON/SQL block is checked only when the line right above it says what it is:
  ``<!-- check: KIND -->``, ``<!-- check: KIND file=NAME -->`` (also saved as ``NAME`` for the
  blocks below it; ``file=A,B`` under both names) or ``<!-- check: KIND append=NAME -->`` (added
  to ``NAME``, then checked).
- a block that cannot run here says why on the line right above it:
  ``<!-- illustrative: REASON -->``.

Anything else is a failure: a block the test cannot classify, a marker without a reason, an
unknown check kind, a shell line that is not ``keel``/``curl``/``export``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CHECK_KINDS",
    "SHELL_LANGS",
    "Block",
    "Command",
    "DocError",
    "parse_blocks",
    "shell_commands",
]

SHELL_LANGS = frozenset({"bash", "sh", "console", "shell"})
# What a ``check:`` marker may name, and the validator the session runs for it.
CHECK_KINDS = frozenset(
    {
        "deployment-policy",
        "gate-policy",
        "trigger",
        "retrain-job",
        "feature-repo",
        "monitor-spec",
        "sqlite",
    }
)
_FENCE = re.compile(r"^(\s*)(```+)(\S*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(illustrative|check)\s*:(.*?)-->\s*$")
_LOOSE_MARKER = re.compile(r"^\s*<!--\s*(illustrative|check)\b")


class DocError(ValueError):
    """A block or marker the docs test cannot use; the message names file and line."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language and text."""

    path: str
    line: int
    lang: str
    text: str
    marker: str | None = None  # "illustrative" or "check"
    argument: str = ""  # the marker's reason or check spec

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def check_kind(self) -> str:
        return self.argument.split()[0] if self.argument.split() else ""

    @property
    def save_as(self) -> str | None:
        found = re.search(r"\bfile=(\S+)", self.argument)
        return found.group(1) if found else None

    @property
    def append_to(self) -> str | None:
        found = re.search(r"\bappend=(\S+)", self.argument)
        return found.group(1) if found else None


@dataclass(frozen=True)
class Command:
    """One logical shell line (continuations joined), with its doc line and allowed exit codes."""

    line: int
    text: str
    comment: str
    exit_codes: frozenset[int] = field(default_factory=lambda: frozenset({0}))


def parse_blocks(path: Path, root: Path) -> list[Block]:
    """Every fenced block of ``path``; raises DocError on a malformed marker or an open fence."""
    relative = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opened = _FENCE.match(lines[index])
        if opened is None:
            if _LOOSE_MARKER.search(lines[index]) and not _is_marker_above_fence(lines, index):
                raise DocError(f"{relative}:{index + 1}: a marker must sit right above a block")
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(opened.group(2)):
            end += 1
        if end == len(lines):
            raise DocError(f"{relative}:{index + 1}: the block is never closed")
        marker, argument = _marker_above(lines, index, relative)
        text = "\n".join(line[len(opened.group(1)) :] for line in lines[index + 1 : end])
        blocks.append(Block(relative, index + 1, opened.group(3), text, marker, argument))
        index = end + 1
    return blocks


def _is_marker_above_fence(lines: list[str], index: int) -> bool:
    return index + 1 < len(lines) and _FENCE.match(lines[index + 1]) is not None


def _marker_above(lines: list[str], index: int, relative: str) -> tuple[str | None, str]:
    if index == 0:
        return None, ""
    found = _MARKER.match(lines[index - 1])
    if found is None:
        if lines[index - 1].lstrip().startswith("<!--"):  # a comment above a block: a marker
            raise DocError(f"{relative}:{index}: malformed marker {lines[index - 1].strip()!r}")
        return None, ""
    kind, argument = found.group(1), found.group(2).strip()
    if not argument:
        raise DocError(f"{relative}:{index}: the {kind} marker needs a reason or a kind")
    if kind == "check" and argument.split()[0] not in CHECK_KINDS:
        raise DocError(f"{relative}:{index}: unknown check kind {argument.split()[0]!r}")
    return kind, argument


def shell_commands(block: Block) -> list[Command]:
    """The logical lines of a shell block; a ``$ `` prompt is dropped, ``\\`` lines joined.

    A trailing comment that says ``exit 1`` (``# exit 1 if drift``) lets that line end with 1:
    the docs say so; any other non-zero exit fails the test.
    """
    commands: list[Command] = []
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(block.text.split("\n")):
        line = raw.rstrip()
        if not pending:
            start = block.line + 1 + offset
            line = line.removeprefix("$ ")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        text, comment = _split_comment(" ".join(part.strip() for part in pending))
        pending = []
        codes = {0, 1} if re.search(r"\bexit 1\b|\b1 a gate failed\b", comment) else {0}
        commands.append(Command(start, text, comment, frozenset(codes)))
    if pending:
        raise DocError(f"{block.where}: the last line continues with a backslash")
    return commands


def _split_comment(line: str) -> tuple[str, str]:
    """The command and its trailing ``# comment`` (a ``#`` inside quotes is kept)."""
    quote: str | None = None
    for position, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position].rstrip(), line[position + 1 :].strip()
    return line, ""
