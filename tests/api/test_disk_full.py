"""A full disk under the database answers 507 ``insufficient_storage``, never a 500.

The database lives on a real tmpfs of a few MiB (:mod:`tests._mounts`) that a filler
file fills up for real, so SQLite meets the kernel's ENOSPC and reports
``database or disk is full`` (SQLITE_FULL), as on a production disk. Each refused
write leaves no partial record, and writes succeed again once space is freed.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from tests._mounts import fill_up, small_fs
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.config import Settings
from keel.errors import InsufficientStorage, Unavailable
from keel.services import open_services
from keel.store.storage_full import storage_full

TEXT = "d" * 9_000  # below the description limit (10,000)
PARAMS = {f"p{i}": "v" * 250 for i in range(1_000)}  # ~250 kB in one transaction


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_fs(tmp_path / "disk", 8 * 2**20) as path:
        yield path


@pytest.fixture
def api(disk: Path) -> Iterator[httpx.Client]:
    services = open_services(Settings(home=disk / "keel"))
    try:
        with serve_in_thread(create_app(services=services)) as url:
            with httpx.Client(base_url=url, timeout=30) as client:
                yield client
    finally:
        services.close()


def _insufficient(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 507, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "insufficient_storage"
    assert "disk is full" in error["message"] and "free space" in error["message"]
    return error


def _until_refused(send: Any, limit: int = 2_000) -> tuple[int, httpx.Response]:
    """Call ``send(i)`` until it is not a success: (successes, the refusal)."""
    for i in range(limit):
        answer: httpx.Response = send(i)
        if answer.status_code >= 300:
            return i, answer
    raise AssertionError(f"{limit} writes fitted on a full disk")


def test_writes_on_a_full_database_disk_are_507_and_leave_nothing(
    api: httpx.Client, disk: Path
) -> None:
    assert api.post("/v1/experiments", json={"name": "before"}).status_code == 201
    run = api.post("/v1/runs", json={"experiment": "before"}).json()
    filler = fill_up(disk)

    # SQLite first fills the free pages its files still hold, then meets ENOSPC
    stored, refused = _until_refused(
        lambda i: api.post("/v1/experiments", json={"name": f"e{i}", "description": TEXT})
    )
    _insufficient(refused)
    assert api.get(f"/v1/experiments/e{stored}").status_code == 404  # no partial record
    for kept in range(stored):  # what was answered 201 is there
        assert api.get(f"/v1/experiments/e{kept}").status_code == 200
    batch = api.post(f"/v1/runs/{run['id']}/batch", json={"params": PARAMS})
    _insufficient(batch)
    assert api.get(f"/v1/runs/{run['id']}").json()["params"] == {}  # all or nothing

    filler.unlink()  # space again: the same writes succeed
    created = api.post("/v1/experiments", json={"name": f"e{stored}", "description": TEXT})
    assert created.status_code == 201, created.text
    batch = api.post(f"/v1/runs/{run['id']}/batch", json={"params": PARAMS})
    assert batch.status_code == 204, batch.text
    assert len(api.get(f"/v1/runs/{run['id']}").json()["params"]) == len(PARAMS)


def test_the_fast_metric_path_answers_507_too(api: httpx.Client, disk: Path) -> None:
    """``POST /v1/runs/{id}/metrics`` is written by the fast lane, outside FastAPI."""
    api.post("/v1/experiments", json={"name": "e"})
    run = api.post("/v1/runs", json={"experiment": "e"}).json()
    filler = fill_up(disk)
    # each metric is small: SQLite first fills the free pages it still holds
    url = f"/v1/runs/{run['id']}/metrics"
    stored, refused = _until_refused(
        lambda step: api.post(url, json={"key": "m", "value": 1.0, "step": step}), 200_000
    )
    _insufficient(refused)
    history = api.get(f"/v1/runs/{run['id']}/metrics/m/history").json()
    assert len(history) == stored  # every 204 is stored, the refused one is not
    filler.unlink()
    assert api.post(url, json={"key": "m", "value": 1.0, "step": stored}).status_code == 204


@pytest.mark.parametrize(
    "raised",
    [
        Unavailable("database unavailable: database or disk is full"),
        OSError(errno.ENOSPC, "No space left on device", "/var/keel/predictions/x.arrow"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
    ],
)
def test_storage_full_recognises_each_kind_of_full_disk(raised: Exception) -> None:
    assert isinstance(storage_full(raised), InsufficientStorage)


def test_storage_full_looks_through_the_store_s_wrapping() -> None:
    raw = sqlite3.OperationalError("database or disk is full")
    wrapped = OperationalError("INSERT", None, raw)
    try:
        try:
            raise wrapped
        except OperationalError as exc:
            raise Unavailable("database unavailable") from exc
    except Unavailable as outer:
        found = storage_full(outer)
    assert found is not None and found.detail == {"store": "database"}
    assert storage_full(Unavailable("database unavailable: database is locked")) is None
    assert storage_full(OSError(errno.EACCES, "Permission denied")) is None


def test_readyz_is_503_while_the_database_refuses_writes_for_lack_of_space(
    disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifacts live elsewhere (they can write): only the database's disk is full."""
    from keel.api.routers import health

    monkeypatch.setattr(health, "DATABASE_FULL_WINDOW_S", 1.5)
    services = open_services(Settings(home=disk / "keel", artifact_root=tmp_path / "art"))
    try:
        with serve_in_thread(create_app(services=services)) as url:
            with httpx.Client(base_url=url, timeout=30) as api:
                before = api.get("/readyz")
                assert before.json()["checks"]["database"] == "ok", before.text
                filler = fill_up(disk)
                _, refused = _until_refused(
                    lambda i: api.post(
                        "/v1/experiments", json={"name": f"e{i}", "description": TEXT}
                    )
                )
                _insufficient(refused)
                full = api.get("/readyz")
                assert full.status_code == 503, full.text
                checks = full.json()["checks"]
                assert checks["database"].startswith("error: disk full"), checks
                assert checks["artifacts"] == "ok"
                filler.unlink()
                time.sleep(1.6)  # the window passed without a refused write
                assert api.get("/readyz").json()["checks"]["database"] == "ok"
    finally:
        services.close()
