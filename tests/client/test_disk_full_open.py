"""Opening keel on a full disk, and the embedded deploy checks, answer as every write does.

The home, the job queue's SQLite file or the database lives on a real tmpfs of a few MiB
(:mod:`tests._mounts`, the ``disk`` fixture of this folder's conftest) filled up for real:
the CLI prints one line and exits 1 (:class:`InsufficientStorage`), never a traceback;
opening the store on a full disk is ``InsufficientStorage`` (was ``InvalidInput``, exit 2);
an embedded drill on a full database disk raises what the HTTP client raises for a 507.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import make_url
from tests._mounts import fill_up
from tests.deploy.conftest import FEATURES, register_models
from tests.deploy.test_holdout_debugging import HOLDOUT
from typer.testing import CliRunner

from keel.automation.queue import make_huey
from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.demo.data import load_churn, split
from keel.errors import InsufficientStorage, Unavailable
from keel.services import open_services

TEXT = "d" * 9_000  # below the description limit (10,000)


def _cli(home: Path, *args: str, **env: str) -> tuple[int, str]:
    """Run the embedded CLI with ``home`` as KEEL_HOME: (exit code, stderr)."""
    variables = {
        "KEEL_HOME": str(home),
        "KEEL_SERVER_URL": None,
        "KEEL_DATABASE_URL": None,
        "KEEL_JOBS_QUEUE": "sqlite",
        "KEEL_JOBS_QUEUE_PATH": None,
    }
    result = CliRunner().invoke(app, list(args), env={**variables, **env})
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stderr


def _one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    return stderr


def test_cli_on_a_full_home_is_one_line_and_exit_1(disk: Path) -> None:
    home = disk / "keel"
    with Client(settings=Settings(home=home)) as client:  # keel.db and the queue file
        client.create_experiment("before")
    filler = fill_up(disk)
    code, stderr = _cli(home, "experiments", "list")
    assert code == 1
    assert "disk is full" in _one_line(stderr) and "free space" in stderr
    assert str(home) in stderr
    filler.unlink()
    assert _cli(home, "experiments", "list")[0] == 0


@pytest.mark.parametrize("existing", [True, False], ids=["existing", "new"])
def test_job_queue_file_on_a_full_disk_names_the_file_and_the_setting(
    disk: Path, tmp_path: Path, existing: bool
) -> None:
    queue = disk / "queue" / "jobs-queue.db"
    settings = Settings(home=tmp_path / "keel", jobs_queue="sqlite", jobs_queue_path=queue)
    if existing:  # a WAL file that was used: SQLite cannot grow its -shm (SQLITE_IOERR_SHMSIZE)
        make_huey(settings).storage.close()
    filler = fill_up(disk)
    with pytest.raises(InsufficientStorage) as raised:
        make_huey(settings)
    error = raised.value
    assert str(queue) in error.message and "KEEL_JOBS_QUEUE_PATH" in error.message
    assert "disk is full" in error.message and error.field == "KEEL_JOBS_QUEUE_PATH"
    assert error.detail == {"store": "jobs_queue"}
    assert isinstance(error.__cause__, sqlite3.OperationalError)

    code, stderr = _cli(tmp_path / "keel", "experiments", "list", KEEL_JOBS_QUEUE_PATH=str(queue))
    assert code == 1 and str(queue) in _one_line(stderr)
    filler.unlink()
    make_huey(settings).storage.close()


def test_a_job_queue_file_that_is_not_sqlite_is_one_line_naming_it(tmp_path: Path) -> None:
    queue = tmp_path / "jobs-queue.db"
    queue.write_bytes(b"not a database, " * 512)
    settings = Settings(home=tmp_path / "keel", jobs_queue="sqlite", jobs_queue_path=queue)
    with pytest.raises(Unavailable) as raised:
        make_huey(settings)
    assert not isinstance(raised.value, InsufficientStorage)
    assert str(queue) in raised.value.message and "KEEL_JOBS_QUEUE_PATH" in raised.value.message
    code, stderr = _cli(tmp_path / "keel", "experiments", "list", KEEL_JOBS_QUEUE_PATH=str(queue))
    assert code == 1 and "file is not a database" in _one_line(stderr)


@pytest.fixture
def database_on_disk(backend: str, disk: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database whose files are on ``disk``."""
    if backend == "sqlite":
        return f"sqlite:///{disk / 'keel.db'}"
    return str(request.getfixturevalue("postgres_on_disk"))


@pytest.mark.parametrize("used", [False, True], ids=["new", "used"])
def test_opening_the_store_on_a_full_disk_is_insufficient_storage(
    database_on_disk: str, disk: Path, tmp_path: Path, used: bool
) -> None:
    settings = Settings(home=tmp_path / "keel", database_url=database_on_disk)
    if used:  # migrated while there was space (SQLite: a WAL file with its -shm)
        open_services(settings).close()
    filler = fill_up(disk)
    # a new database: the migrations' writes are refused; SQLite's used file: its -shm
    # cannot grow; a used PostgreSQL schema opens (reads only) and a write meets the disk
    with pytest.raises(InsufficientStorage) as raised, Client(settings=settings) as client:
        for i in range(200_000):
            client.create_experiment(f"e{i}", TEXT)
    error = raised.value
    assert "disk is full" in error.message and "free space" in error.message
    assert error.detail["store"] == "database"
    where = make_url(database_on_disk).render_as_string(hide_password=True)
    if not used:  # refused at open: the message names the database, no longer InvalidInput
        assert where.removeprefix("sqlite:///") in error.message
        assert error.field == "KEEL_DATABASE_URL" and error.exit_code == 1
        code, stderr = _cli(
            tmp_path / "keel", "experiments", "list", KEEL_DATABASE_URL=database_on_disk
        )
        assert code == 1 and "disk is full" in _one_line(stderr)
    filler.unlink()
    with Client(settings=settings) as client:
        assert client.create_experiment("after", TEXT).name == "after"


# SQLite only: its tables share one file, so filling it with experiments leaves no page for
# the drill's rollback; on PostgreSQL each table has its own files and the deployment's page
# still had room (tried: the rollback was stored and only a listener's write was refused).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_embedded_drill_on_a_full_database_disk_raises_insufficient_storage(
    database_on_disk: str, disk: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "keel", database_url=database_on_disk)
    train, _, production = split(load_churn().dropna(subset=FEATURES), seed=1, fractions=(0.6, 0.1))
    register_models(settings, train, "weak", "good")
    probe = production[FEATURES].iloc[:10].to_dict(orient="records")
    with Client(settings=settings) as sdk:
        services = sdk.transport.services  # type: ignore[attr-defined]
        services.deployments.create(HOLDOUT, actor="ana")
        filler = fill_up(disk)
        with pytest.raises(InsufficientStorage):  # the database's free pages, then the disk
            for i in range(200_000):
                sdk.create_experiment(f"filler{i}", TEXT)
        with pytest.raises(InsufficientStorage, match="disk is full") as raised:
            sdk.drill_deployment("churn-holdout", instances=probe, timeout_s=20)
        assert raised.value.detail == {"store": "database"}
        assert services.deployments.get("churn-holdout").status == "active"  # not rolled back
        filler.unlink()
        report = sdk.drill_deployment("churn-holdout", instances=probe, timeout_s=20)
    assert report["passed"], report["checks"]
