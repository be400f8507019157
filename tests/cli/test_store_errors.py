"""An unusable home or database is one line naming the path or revision, exit 2 (#15.13)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from tests._mounts import remount, small_fs
from typer.testing import CliRunner, Result

from keel.cli.main import app
from keel.config import Settings
from keel.services import open_services
from keel.store.sql.migrate import head_revision

runner = CliRunner()

# Commands that open the store, `keel server` among them: it must refuse to start.
OPENING = [["runs", "list", "churn"], ["db", "upgrade"], ["server", "--port", "1"]]


def cli(home: Path, *args: str) -> Result:
    env = {"KEEL_HOME": str(home), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    return runner.invoke(app, list(args), env=env)


def one_line_exit_2(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    return result.stderr


def make_home(home: Path) -> Path:
    open_services(Settings(home=home)).close()
    return home / "keel.db"


@pytest.mark.parametrize("args", OPENING, ids=" ".join)
def test_corrupt_database_names_the_file(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "keel.db").write_bytes(b"\x13not a database" * 300)
    message = one_line_exit_2(cli(tmp_path, *args))
    assert str(tmp_path / "keel.db") in message and "backup" in message


def test_corrupt_database_current_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "keel.db").write_bytes(b"\x00" * 100 + b"garbage" * 500)
    message = one_line_exit_2(cli(tmp_path, "db", "current"))
    assert str(tmp_path / "keel.db") in message


@pytest.mark.parametrize("args", OPENING, ids=" ".join)
def test_newer_schema_names_the_revision(tmp_path: Path, args: list[str]) -> None:
    with sqlite3.connect(make_home(tmp_path)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeed0042'")
    message = one_line_exit_2(cli(tmp_path, *args))
    assert "'f00dfeed0042'" in message and "newer keel" in message
    assert f"'{head_revision()}'" in message


def test_newer_schema_is_left_untouched_and_shown(tmp_path: Path) -> None:
    with sqlite3.connect(make_home(tmp_path)) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f00dfeed0042'")
    cli(tmp_path, "db", "upgrade")
    result = cli(tmp_path, "db", "current", "--json")
    assert result.exit_code == 0, result.output
    assert '"current": "f00dfeed0042"' in result.stdout


@pytest.mark.parametrize("args", OPENING, ids=" ".join)
def test_read_only_home_names_the_path(tmp_path: Path, args: list[str]) -> None:
    with small_fs(tmp_path / "mnt", 4 * 1024 * 1024) as mount:
        database = make_home(mount / "home")
        remount(mount, readonly=True)
        message = one_line_exit_2(cli(mount / "home", *args))
        assert str(database) in message and "KEEL_HOME" in message


def test_home_that_cannot_be_created_names_it(tmp_path: Path) -> None:
    with small_fs(tmp_path / "mnt", 1024 * 1024) as mount:
        remount(mount, readonly=True)
        message = one_line_exit_2(cli(mount / "home", "runs", "list", "churn"))
        assert str(mount / "home") in message and "KEEL_HOME" in message
