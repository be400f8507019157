"""Free space on the volume of a SQLite file, for readiness.

``/readyz`` should leave the load balancer's pool before SQLite refuses writes with
``database or disk is full``, not only after (:mod:`keel.store.sql.diskfull`), and the
database's volume need not be the artifact root's. One ``statvfs`` of the file's folder
answers without a write and without a database round trip, cheap enough for every poll.
A PostgreSQL server's disk is not visible from here: it keeps only the refused-write
signal.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy import Engine

__all__ = ["low_space", "sqlite_file"]


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite ``engine``; None for another database or in memory."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def low_space(path: Path, min_free_bytes: int, setting: str) -> str | None:
    """Why the volume holding the SQLite file ``path`` has too little free space, or None.

    Below ``min_free_bytes`` (named by ``setting`` in the message) it is low; ``0`` turns
    the check off. The file's folder is what is measured, after resolving symbolic links
    as SQLite does, because its ``-wal`` and ``-shm`` files grow there too.
    """
    if min_free_bytes <= 0:
        return None
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.realpath(path))).free
    except OSError as exc:  # the folder is gone or unreadable: not ready either
        return f"cannot read the free space of {path}'s volume: {exc.strerror or exc}"
    if free >= min_free_bytes:
        return None
    return (
        f"{free} bytes free on the volume of {path}, below the {min_free_bytes} needed "
        f"({setting}); free space there"
    )
