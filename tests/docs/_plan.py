"""Turn a Markdown file's blocks into the steps ``_session.py`` runs, and run them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.docs._blocks import SHELL_LANGS, Block, DocError, shell_commands

__all__ = ["DOCS", "ROOT", "Zygote", "build_world", "run_session", "steps_of"]

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
    # Group commit: an answer returns once its prediction is on disk, so a monitor run by the
    # next line sees what a server just served (the docs' order; 0.5 s later a user would).
    environ.update(KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S="0")
    # One thread per native library: two files run at once and OpenMP spinning on a shared
    # machine made a one-row LightGBM predict take 50 ms (the latency gate does 200).
    environ.update(OMP_NUM_THREADS="1")
    return environ


class Zygote:
    """``_session.py --zygote``: forks a session per file from one process that imported
    keel, pandas, scikit-learn and LightGBM once."""

    def __init__(self, world: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_session.py"), "--zygote"],
            env=_environment(world / "home"),
            stdin=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()

    def submit(self, plan_path: Path) -> None:
        assert self.process.stdin is not None
        with self.lock:
            self.process.stdin.write(f"{plan_path}\n")
            self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def run_session(
    steps: list[dict[str, Any]], world: Path, tmp: Path, zygote: Zygote | None = None
) -> tuple[int, str]:
    """The session over a fresh copy of the world; (exit code, its output). Forked from
    ``zygote`` when given, else a new process."""
    home, work, logs = tmp / "home", tmp / "work", tmp / "logs"
    shutil.copytree(world / "home", home)
    shutil.copytree(world / "files", work)
    logs.mkdir()
    plan = {
        "steps": steps,
        "home": str(home),
        "workdir": str(work),
        "logs": str(logs),
        "env": _environment(home),
        "output": str(tmp / "output.txt"),
        "rc": str(tmp / "rc"),
        "pid": str(tmp / "pid"),
    }
    plan_path = tmp / "plan.json"
    plan_path.write_text(json.dumps(plan))
    if zygote is None:
        done = subprocess.run(
            [sys.executable, str(HERE / "_session.py"), str(plan_path)],
            env=_environment(home),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return done.returncode, done.stdout + done.stderr
    zygote.submit(plan_path)
    deadline = time.monotonic() + 300
    rc = tmp / "rc"
    while not rc.exists() or not rc.read_text():
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                os.kill(int((tmp / "pid").read_text()), signal.SIGKILL)
            return 1, "DOCS-FAIL: the session did not finish in 300 s\n" + _read(tmp)
        time.sleep(0.1)
    return int(rc.read_text()), _read(tmp)


def _read(tmp: Path) -> str:
    path = tmp / "output.txt"
    return path.read_text(errors="replace") if path.exists() else ""
