"""Content-addressed artifact store on the local file system.

Blobs live at ``<root>/sha256/<aa>/<rest-of-digest>``: identical bytes are
stored once, whichever run or model refers to them. Writes go to a temporary
file in the same directory, are fsynced, then renamed into place, so a blob is
either absent or complete even after ``kill -9``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from keel.errors import InsufficientStorage, InvalidInput, KeelError, NotFound
from keel.store.storage_full import FULL_ERRNOS

__all__ = ["ArtifactStore", "Blob", "normalize_artifact_path"]

_CHUNK = 1024 * 1024

#: OS errors meaning "this file system cannot take the bytes": full, over quota,
#: read-only or not ours to write. They answer 507, not 500 (#15.13).
_CANNOT_STORE = FULL_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored blob: its sha256 digest and size."""

    sha256: str
    size_bytes: int


def normalize_artifact_path(path: str, *, field: str = "path") -> str:
    """Validate a relative artifact path and return it in POSIX form.

    Raises :class:`InvalidInput` for absolute paths, ``..`` segments, empty
    paths, backslashes, NUL bytes and drive letters: an artifact path may never
    name anything outside its run.
    """
    if not isinstance(path, str) or not path.strip():
        raise InvalidInput("artifact path must be a non-empty relative path", field=field)
    if "\x00" in path or "\\" in path:
        raise InvalidInput(
            "artifact path may not contain NUL or backslash", field=field, value=path
        )
    posix = PurePosixPath(path)
    if posix.is_absolute() or (len(path) > 1 and path[1] == ":"):
        raise InvalidInput("artifact path must be relative", field=field, value=path)
    parts = [p for p in posix.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise InvalidInput("artifact path may not contain '..'", field=field, value=path)
    return "/".join(parts)


class ArtifactStore:
    """Local content-addressed blob storage rooted at ``root``.

    ``min_free_bytes``: below this much free space :meth:`write_problem` reports the
    store unable to write, so ``/readyz`` turns 503 before uploads start failing.
    """

    #: Seconds a passing write probe is trusted: /readyz is polled often and the probe
    #: writes and fsyncs a file. A failing probe is never cached.
    probe_interval_s: float = 5.0

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes
        self._passed_probe_at: float | None = None

    def write_problem(self) -> str | None:
        """Why the store cannot write now (full, read-only, low on space), or None.

        A periodic probe for readiness: free space under ``root`` against
        ``min_free_bytes``, then a one-byte file written and fsynced in its staging folder.
        """
        now = time.monotonic()
        if (
            self._passed_probe_at is not None
            and now - self._passed_probe_at < self.probe_interval_s
        ):
            return None
        staging = self.root / "tmp"
        try:
            staging.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(staging).free
            if free < self.min_free_bytes:
                return (
                    f"{free} bytes free under {self.root}, below the {self.min_free_bytes} "
                    "needed (KEEL_ARTIFACT_MIN_FREE_BYTES)"
                )
            with tempfile.NamedTemporaryFile(dir=staging, prefix="probe-") as probe:
                probe.write(b"k")
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            return f"cannot write {self.root}: {exc.strerror or exc}"
        self._passed_probe_at = now
        return None

    def _cannot_store(self, exc: OSError) -> InsufficientStorage:
        self._passed_probe_at = None  # readiness probes again at its next call
        full = exc.errno in FULL_ERRNOS
        why = "its file system is full" if full else "its file system is read-only or not writable"
        return InsufficientStorage(
            f"cannot store the artifact: {why} ({exc.strerror}); free space or fix "
            "the mount of the artifact root (KEEL_ARTIFACT_ROOT), then retry",
            errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        )

    def _blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput("not a sha256 hex digest", field="sha256", value=sha256)
        return self.root / "sha256" / sha256[:2] / sha256[2:]

    def put_stream(self, stream: BinaryIO, *, max_bytes: int | None = None) -> Blob:
        """Store the bytes of ``stream``; returns their digest and size.

        Raises :class:`InsufficientStorage` when the file system is full or read-only
        (nothing partial is left behind).
        """
        try:
            return self._put_stream(stream, max_bytes)
        except OSError as exc:
            if exc.errno in _CANNOT_STORE:
                raise self._cannot_store(exc) from None
            raise

    def _put_stream(self, stream: BinaryIO, max_bytes: int | None) -> Blob:
        staging = self.root / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=staging)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        from keel.errors import PayloadTooLarge

                        raise PayloadTooLarge(
                            f"artifact exceeds the {max_bytes}-byte limit", field="body"
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            target = self._blob_path(sha)
            if target.exists():
                os.unlink(tmp_name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, target)
            return Blob(sha, size)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise

    def put_bytes(self, data: bytes) -> Blob:
        """Store ``data``; returns its digest and size."""
        import io

        return self.put_stream(io.BytesIO(data))

    def put_file(self, path: Path) -> Blob:
        """Store the file at ``path`` (symlinks are refused)."""
        path = Path(path)
        if path.is_symlink():
            raise InvalidInput(
                "symlinks are not stored as artifacts", field="path", value=str(path)
            )
        with path.open("rb") as handle:
            return self.put_stream(handle)

    def exists(self, sha256: str) -> bool:
        """Whether a blob with this digest is stored."""
        return self._blob_path(sha256).is_file()

    def path(self, sha256: str) -> Path:
        """Local path of a stored blob; raises :class:`NotFound` when absent."""
        target = self._blob_path(sha256)
        if not target.is_file():
            raise NotFound(f"artifact blob {sha256} is missing", field="sha256")
        return target

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob for reading."""
        return self.path(sha256).open("rb")

    def read_bytes(self, sha256: str) -> bytes:
        """All bytes of a stored blob."""
        return self.path(sha256).read_bytes()

    def materialize(self, sha256: str, destination: Path) -> None:
        """Copy a blob to ``destination`` (creating parent directories), checking its sha256.

        Raises :class:`KeelError` when the stored bytes no longer hash to ``sha256``
        (changed on disk): a model version loads exactly the bytes it was registered
        with, or not at all.
        """
        destination.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with self.open(sha256) as source, destination.open("wb") as out:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            destination.unlink()
            raise KeelError(
                f"artifact blob {sha256} failed its sha256 check: the stored bytes changed",
                field="sha256",
            )


def iter_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative posix path, file)`` for every regular file under ``directory``.

    Symlinks are refused rather than followed: a link could point outside the
    directory being logged.
    """
    directory = Path(directory)
    for current, dirnames, filenames in os.walk(directory, followlinks=False):
        base = Path(current)
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                raise InvalidInput(
                    "symlinks are not stored as artifacts", field="path", value=str(base / name)
                )
        for name in sorted(filenames):
            file = base / name
            if file.is_symlink():
                raise InvalidInput(
                    "symlinks are not stored as artifacts", field="path", value=str(file)
                )
            yield file.relative_to(directory).as_posix(), file
