"""A full or read-only artifact disk answers 507 and turns /readyz not ready (#15.13).

The disk is a real tmpfs of a few MiB (tests/_mounts.py): the kernel's own ENOSPC and
EROFS, not a simulated error.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests._mounts import remount, small_fs
from tests.conftest import serve_in_thread

from keel.api.app import create_app
from keel.config import Settings
from keel.errors import InsufficientStorage
from keel.services import Services, open_services
from keel.store.artifacts import ArtifactStore

MIB = 1024 * 1024


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_fs(tmp_path / "disk", 8 * MIB) as mount:
        yield mount


@pytest.fixture
def full_disk_services(tmp_path: Path, disk: Path) -> Iterator[Services]:
    settings = Settings(
        home=tmp_path / "keel", artifact_root=disk / "artifacts", artifact_min_free_bytes=MIB
    )
    services = open_services(settings)
    services.artifacts.probe_interval_s = 0  # every /readyz probes, so the test sees changes
    yield services
    services.close()


def test_put_stream_on_a_full_disk_raises_507_and_leaves_nothing(disk: Path) -> None:
    store = ArtifactStore(disk / "artifacts")
    with pytest.raises(InsufficientStorage, match="full") as caught:
        store.put_stream(io.BytesIO(b"x" * 12 * MIB))
    assert caught.value.status == 507
    assert list((disk / "artifacts" / "tmp").iterdir()) == []
    assert store.put_bytes(b"small").size_bytes == 5  # the space came back


def test_upload_to_a_full_disk_is_507_and_readyz_follows_free_space(
    full_disk_services: Services, disk: Path
) -> None:
    run = full_disk_services.tracking.create_run("disk", name="full")
    with (
        serve_in_thread(create_app(services=full_disk_services)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        assert http.get("/readyz").status_code == 200
        big = http.put(f"/v1/runs/{run.id}/artifacts/big.bin", content=b"x" * 12 * MIB)
        assert big.status_code == 507, big.text
        error = big.json()["error"]
        assert error["code"] == "insufficient_storage" and "full" in error["message"]
        assert (
            http.put(f"/v1/runs/{run.id}/artifacts/ok.bin", content=b"y" * MIB).status_code == 201
        )

        filler = disk / "filler"  # someone else fills the disk
        with filler.open("wb") as out, pytest.raises(OSError):
            out.write(b"\0" * 8 * MIB)
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "bytes free" in ready.json()["checks"]["artifacts"]

        filler.unlink()
        assert http.get("/readyz").status_code == 200


def test_read_only_artifact_disk_is_507_and_not_ready(
    full_disk_services: Services, disk: Path
) -> None:
    run = full_disk_services.tracking.create_run("disk", name="ro")
    with (
        serve_in_thread(create_app(services=full_disk_services)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        remount(disk, readonly=True)
        answer = http.put(f"/v1/runs/{run.id}/artifacts/a.txt", content=b"a")
        assert answer.status_code == 507, answer.text
        assert "read-only" in answer.json()["error"]["message"]
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "cannot write" in ready.json()["checks"]["artifacts"]
        remount(disk, readonly=False)
        assert http.get("/readyz").status_code == 200
