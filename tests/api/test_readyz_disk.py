"""/readyz looks at the free space of each SQLite file's volume, without writing.

The SQLite file under test lives on a real tmpfs of a few MiB (:mod:`tests._mounts`,
skipped where the process may not mount), filled for real; everything else lives on the
test's ordinary temporary disk, so only the file on the tmpfs can be the one named.
Served by a live uvicorn server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests._mounts import fill_up, small_fs
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.config import Settings
from keel.services import open_services

MIB = 2**20


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_fs(tmp_path / "disk", 8 * MIB) as path:
        yield path


Serve = Callable[..., httpx.Client]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(**settings)``: a client of a live server over those settings (artifacts off
    the tmpfs)."""
    with ExitStack() as stack:

        def start(**fields: Any) -> httpx.Client:
            services = open_services(Settings(artifact_root=tmp_path / "artifacts", **fields))
            stack.callback(services.close)
            url = stack.enter_context(serve_in_thread(create_app(services=services)))
            return stack.enter_context(httpx.Client(base_url=url, timeout=30))

        yield start


def _free_in(message: str) -> int:
    found = re.search(r"(\d+) bytes free", message)
    assert found, message
    return int(found.group(1))


def test_a_full_database_volume_is_503_naming_the_file_then_ready_once_freed(
    serve: Serve, disk: Path, tmp_path: Path
) -> None:
    api = serve(
        home=disk / "keel",
        jobs_queue_path=tmp_path / "queue" / "jobs-queue.db",
        sqlite_min_free_bytes=MIB,
    )
    before = api.get("/readyz")
    assert before.status_code == 200, before.text
    assert before.json()["checks"]["database_disk"] == "ok"

    filler = fill_up(disk)  # nobody wrote to the database since: no refused write
    full = api.get("/readyz")
    assert full.status_code == 503, full.text
    checks = full.json()["checks"]
    low = checks["database_disk"]
    assert low.startswith("error: ") and str(disk / "keel" / "keel.db") in low, low
    assert _free_in(low) < MIB and "KEEL_SQLITE_MIN_FREE_BYTES" in low
    assert checks["database"] == "ok"  # found from free space, not from a refused write
    assert checks["jobs_queue_disk"] == "ok" and checks["artifacts"] == "ok", checks

    filler.unlink()  # space again: ready at the next poll, no restart
    after = api.get("/readyz")
    assert after.status_code == 200, after.text
    assert after.json()["checks"]["database_disk"] == "ok"


def test_a_queue_file_volume_below_the_threshold_is_503_naming_the_queue_file(
    serve: Serve, disk: Path, tmp_path: Path
) -> None:
    """Below the threshold is enough: the volume need not be full yet."""
    queue = disk / "jobs-queue.db"
    api = serve(home=tmp_path / "keel", jobs_queue_path=queue, sqlite_min_free_bytes=4 * MIB)
    assert api.get("/readyz").status_code == 200
    filler = disk / "filler"
    filler.write_bytes(b"\0" * 5 * MIB)  # ~3 MiB left of 8: below 4 MiB, not full
    low = api.get("/readyz")
    assert low.status_code == 503, low.text
    checks = low.json()["checks"]
    message = checks["jobs_queue_disk"]
    assert str(queue) in message and 0 < _free_in(message) < 4 * MIB, message
    assert checks["database_disk"] == "ok", checks
    filler.unlink()
    assert api.get("/readyz").status_code == 200


@pytest.mark.postgres
def test_postgresql_has_no_volume_check_but_the_sqlite_queue_file_has(
    serve: Serve, postgres_schema_url: str, tmp_path: Path
) -> None:
    """The PostgreSQL server's disk is not ours to statvfs: only refused writes tell."""
    api = serve(home=tmp_path / "keel", database_url=postgres_schema_url)
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert "database_disk" not in checks and checks["jobs_queue_disk"] == "ok", checks
