"""The ``keel`` command starts fast: subcommands and heavy libraries load on use (#15.14)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from keel.cli.main import COMMANDS, app

# Libraries that cost 0.1-1 s each to import; none of them is needed to print help,
# the version, or a table read from a server.
HEAVY = ("scipy", "pandas", "sklearn", "duckdb", "shap", "numpy", "pyarrow", "sqlalchemy")


def _imported(args: list[str], home: Path) -> set[str]:
    """Top-level package names a fresh interpreter imports running ``args``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines()]
    return {line.split(".")[0] for line in lines if line and not line.startswith("imported")}


@pytest.mark.parametrize(
    "args",
    [
        ["-c", "import keel.cli.main"],
        ["-c", "import keel"],
        ["-m", "keel", "--help"],
        ["-m", "keel", "version"],
        *(["-m", "keel", name, "--help"] for name in COMMANDS),
    ],
    ids=" ".join,
)
def test_cli_start_imports_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    assert _imported(args, tmp_path) & set(HEAVY) == set()


@pytest.mark.parametrize(
    "read",
    [
        ["models", "list"],
        ["users", "list"],
        ["tokens", "list"],
        ["audit"],
        ["predictions", "list"],
        ["predictions", "labels"],
    ],
    ids=" ".join,
)
def test_cli_read_over_server_imports_no_heavy_library(
    live_server: str, tmp_path: Path, read: list[str]
) -> None:
    imported = _imported(["-m", "keel", *read, "--server", live_server], tmp_path)
    assert imported & set(HEAVY) == set()


def test_cli_version_wall_time_is_short(tmp_path: Path) -> None:
    # The best of three, so a busy CI machine does not fail it; it was 2.3-3.3 s
    # before the lazy table, 0.15-0.2 s after on an idle machine.
    env = {**os.environ, "KEEL_HOME": str(tmp_path)}
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "keel", "version"], env=env, check=True, timeout=60)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0, timings


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_lazy_table_help_matches_the_command(name: str) -> None:
    # `keel --help` shows the table's text without importing; it must say what the
    # command's own help says.
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    assert (command.help or "").splitlines()[0] == COMMANDS[name].help


def test_lazy_table_lists_every_command_once(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["--help"], env={"KEEL_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    for name in [*COMMANDS, "demo", "version"]:
        assert f" {name} " in result.stdout


def test_unknown_command_still_suggests(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["modls"], env={"KEEL_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "models" in result.output
