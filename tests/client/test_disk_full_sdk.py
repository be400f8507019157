"""Both SDK transports raise :class:`InsufficientStorage` for a write that meets a full disk.

Over HTTP the server answers 507 and the client rebuilds the class; embedded, the same
rule (``keel.store.storage_full``) turns the store's refusal into it. The database lives
on a real tmpfs of a few MiB (:mod:`tests._mounts`) filled up for real, as in
``tests/api/test_disk_full.py``: the SQLite file, or the tables of a PostgreSQL schema
through a tablespace on the tmpfs (the server meets ENOSPC and raises SQLSTATE 53100).
Nothing partial is stored, and the same writes succeed once space is freed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression
from tests._mounts import fill_up
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel.api import create_app
from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.errors import InsufficientStorage, NotFound
from keel.services import open_services

TEXT = "d" * 9_000  # below the description limit (10,000)
PARAMS = {f"p{i}": "v" * 250 for i in range(1_000)}  # ~250 kB in one transaction


@pytest.fixture
def settings(backend: str, disk: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # the artifacts live elsewhere (they can write): only the database's disk fills up
    if backend == "sqlite":
        return Settings(home=disk / "keel", artifact_root=tmp_path / "artifacts")
    return Settings(
        home=tmp_path / "keel",
        database_url=request.getfixturevalue("postgres_on_disk"),
        artifact_root=tmp_path / "artifacts",
    )


@pytest.fixture(params=["embedded", "http"])
def client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Client]:
    if request.param == "embedded":
        with Client(settings=settings) as embedded:
            yield embedded
        return
    services = open_services(settings)
    try:
        with serve_in_thread(create_app(services=services)) as url, Client(url) as remote:
            yield remote
    finally:
        services.close()


def _refused(write: Callable[[int], Any], limit: int = 200_000) -> tuple[int, InsufficientStorage]:
    """Call ``write(i)`` until it raises: (writes that succeeded, the error)."""
    for i in range(limit):
        try:
            write(i)
        except InsufficientStorage as error:
            assert "disk is full" in error.message and "free space" in error.message
            assert error.detail == {"store": "database"}
            return i, error
    raise AssertionError(f"{limit} writes fitted on a full disk")


def _fill_database(client: Client, disk: Path) -> Path:
    """Fill the disk, then SQLite's free pages (it writes into them before meeting ENOSPC)."""
    filler = fill_up(disk)
    _refused(lambda i: client.create_experiment(f"filler{i}", TEXT))
    return filler


def test_sdk_writes_on_a_full_database_disk_raise_insufficient_storage(
    client: Client, disk: Path
) -> None:
    run = client.start_run(experiment="before")
    filler = fill_up(disk)
    stored, error = _refused(lambda i: client.create_experiment(f"e{i}", TEXT))
    assert error.status == 507 and error.code == "insufficient_storage"
    with pytest.raises(NotFound):
        client.get_experiment(f"e{stored}")  # no partial record
    with pytest.raises(InsufficientStorage):
        run.log_params(PARAMS)
    assert client.get_run(run.id).params == {}  # all or nothing

    filler.unlink()  # space again: the same writes succeed
    assert client.create_experiment(f"e{stored}", TEXT).name == f"e{stored}"
    run.log_params(PARAMS)
    assert len(client.get_run(run.id).params) == len(PARAMS)


def test_sdk_metric_on_a_full_database_disk_raises_and_stores_nothing(
    client: Client, disk: Path
) -> None:
    run = client.start_run(experiment="e")
    filler = fill_up(disk)
    stored, _ = _refused(lambda step: run.log_metric("m", 1.0, step=step))
    assert len(client.metric_history(run.id, "m")) == stored  # the refused one is not there
    filler.unlink()
    run.log_metric("m", 1.0, step=stored)
    assert len(client.metric_history(run.id, "m")) == stored + 1


def test_sdk_model_registration_on_a_full_database_disk_raises_and_registers_nothing(
    client: Client, disk: Path
) -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    run = client.start_run(experiment="e")
    run.log_model(model)  # the files, while there is space
    filler = _fill_database(client, disk)
    with pytest.raises(InsufficientStorage, match="disk is full"):
        client.register_model("m", run.id)
    with pytest.raises(NotFound):
        client.get_model("m")
    filler.unlink()
    assert client.register_model("m", run.id).version == 1


def test_cli_write_on_a_full_database_disk_is_one_line_and_exit_1(
    settings: Settings, disk: Path, tmp_path: Path
) -> None:
    with Client(settings=settings) as client:
        run = client.start_run(experiment="e")
        run.log_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), registered_name="m")
        _fill_database(client, disk)
    env = {
        "KEEL_HOME": str(settings.home),
        "KEEL_ARTIFACT_ROOT": str(settings.artifact_root),
        # the job queue's SQLite file elsewhere too: opening it on the full disk is refused
        # before the command runs (naming the queue file: test_disk_full_open.py), which is
        # not what this tests
        "KEEL_JOBS_QUEUE_PATH": str(tmp_path / "jobs-queue.db"),
        "KEEL_DATABASE_URL": settings.database_url,
        "KEEL_SERVER_URL": None,
    }
    result = CliRunner().invoke(app, ["models", "alias", "m", "champion", "1"], env=env)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: cannot write: the database's disk is full")
