"""Turn a Markdown file's blocks into the steps ``_session.py`` runs, and run them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.docs._blocks import SHELL_LANGS, Block, DocError, shell_commands

__all__ = ["DOCS", "ROOT", "build_world", "run_session", "steps_of"]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_ADDRESS = re.compile(r"(?:127\.0\.0\.1|localhost|0\.0\.0\.0|keel):8080")
_SERVER_LINE = re.compile(r"(^|&&\s*)keel server\b")


def steps_of(blocks: list[Block]) -> list[dict[str, Any]]:
    """The steps the session runs, in document order; DocError for an unclassifiable block."""
    steps: list[dict[str, Any]] = []
    for block in blocks:
        base = {"path": block.path, "line": block.line, "text": block.text}
        if block.marker == "illustrative":
            continue
        if block.marker == "check":
            steps.append(
                {**base, "kind": "check", "check": block.check_kind}
                | {"save_as": block.save_as, "append_to": block.append_to}
            )
        elif block.lang == "python":
            steps.append({**base, "kind": "python"})
        elif block.lang in SHELL_LANGS:
            for command in shell_commands(block):
                steps.append(
                    {
                        "path": block.path,
                        "line": command.line,
                        "kind": "shell",
                        "text": command.text,
                        "exit_codes": sorted(command.exit_codes),
                    }
                )
        else:
            raise DocError(
                f"{block.where}: a ```{block.lang or '(no language)'} block the test cannot "
                "run: add <!-- check: KIND --> or <!-- illustrative: REASON --> above it"
            )
    return _with_server(steps)


def _with_server(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A file that talks to ``:8080`` before its ``keel server`` line starts that server first
    (the line itself then finds it running); with no such line, ``keel server`` plain."""
    servers = [s for s in steps if s["kind"] == "shell" and _SERVER_LINE.search(s["text"])]
    for step in steps:
        if servers and step is servers[0]:
            return steps
        if step["kind"] != "check" and _ADDRESS.search(step["text"]):
            text = servers[0]["text"] if servers else "keel server --host 127.0.0.1"
            start = {"path": step["path"], "line": step["line"], "kind": "server", "text": text}
            return [start, *steps]
    return steps


def build_world(world: Path) -> None:
    """The seeded KEEL_HOME and placeholder files (tests/docs/_world.py) under ``world``."""
    done = subprocess.run(
        [sys.executable, str(HERE / "_world.py"), str(world / "home"), str(world / "files")],
        env=_environment(world / "home"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])


def _environment(home: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    # The working directory is importable: docs name ``mypkg.train:train``, a fixture there.
    environ.update(KEEL_HOME=str(home), PYTHONPATH=str(home.parent / "work"), COLUMNS="200")
    return environ


def run_session(steps: list[dict[str, Any]], world: Path, tmp: Path) -> tuple[int, str]:
    """The session process over a fresh copy of the world; (exit code, its output)."""
    home, work, logs = tmp / "home", tmp / "work", tmp / "logs"
    shutil.copytree(world / "home", home)
    shutil.copytree(world / "files", work)
    logs.mkdir()
    plan = {"steps": steps, "home": str(home), "workdir": str(work), "logs": str(logs)}
    (tmp / "plan.json").write_text(json.dumps(plan))
    done = subprocess.run(
        [sys.executable, str(HERE / "_session.py"), str(tmp / "plan.json")],
        env=_environment(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr
