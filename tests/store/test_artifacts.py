"""Content-addressed artifact store."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from keel.errors import InvalidInput, NotFound, PayloadTooLarge
from keel.store.artifacts import ArtifactStore, iter_files, normalize_artifact_path


def test_identical_bytes_are_stored_once(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first, second = store.put_bytes(b"model"), store.put_bytes(b"model")
    assert first == second and first.size_bytes == 5
    assert len(list((tmp_path / "sha256").rglob("*"))) == 2  # one prefix dir + one blob
    assert store.read_bytes(first.sha256) == b"model"


def test_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 7)  # several read chunks
    blob = ArtifactStore(tmp_path).put_stream(io.BytesIO(data))
    assert blob.sha256 == hashlib.sha256(data).hexdigest()


def test_size_limit_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(PayloadTooLarge):
        store.put_stream(io.BytesIO(b"x" * 100), max_bytes=10)
    assert not list((tmp_path / "tmp").iterdir())
    assert not (tmp_path / "sha256").exists()


@pytest.mark.parametrize(
    "path",
    ["../x", "a/../../x", "/etc/passwd", "C:\\x", "a\\b", "", "  ", "a/\x00b", "..", "c:/x"],
)
def test_unsafe_paths_rejected(path: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_artifact_path(path)


def test_paths_are_normalised() -> None:
    assert normalize_artifact_path("./a//b/./c.txt") == "a/b/c.txt"


def test_missing_blob_and_bad_digest(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(NotFound):
        store.path("0" * 64)
    with pytest.raises(InvalidInput):
        store.path("../../etc/passwd")


def test_symlinks_are_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "secret").write_text("s")
    (tmp_path / "d" / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(InvalidInput, match="symlink"):
        list(iter_files(tmp_path / "d"))
    with pytest.raises(InvalidInput, match="symlink"):
        ArtifactStore(tmp_path / "store").put_file(tmp_path / "d" / "link")
