"""Small real file systems for tests of full and read-only disks (#15.13).

A tmpfs of a few MiB fills up for real (ENOSPC from the kernel) and can be remounted
read-only (EROFS), so the code under test meets the same errors as on a production
disk. Mounting needs root with CAP_SYS_ADMIN; elsewhere the tests skip.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["fill_up", "remount", "small_fs"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@contextmanager
def small_fs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``path`` for the block; skips the test if the
    process may not mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        _run("umount", "-l", str(path))


def remount(path: Path, *, readonly: bool) -> None:
    """Remount the tmpfs at ``path`` read-only or read-write."""
    done = _run("mount", "-o", f"remount,{'ro' if readonly else 'rw'}", str(path))
    assert done.returncode == 0, done.stderr


def fill_up(path: Path) -> Path:
    """Write a filler file under ``path`` until the kernel answers ENOSPC; returns it
    (unlink it to free the space again)."""
    filler = path / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65_536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler
