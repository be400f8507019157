"""Whether an error means "a disk the write needs is full": the one rule for every caller.

Wherever a write meets a full disk — SQLite's ``database or disk is full``
(SQLITE_FULL) or its failure to grow a WAL file's shared memory (SQLITE_IOERR_SHMSIZE),
PostgreSQL's ``disk_full`` (SQLSTATE 53100), or ``OSError`` ENOSPC/EDQUOT from a file
write — the caller gets :class:`InsufficientStorage` naming
what is full and what to do: the HTTP API answers it as ``507 insufficient_storage``
(:mod:`keel.api.errors`) and the embedded SDK raises it (:mod:`keel.client._local_errors`),
so both transports raise the same class. The store has already rolled the write back
(one transaction per call), so nothing partial is left. The store raises
``Unavailable`` for database errors; :func:`storage_full` looks through its cause chain.
No SQLAlchemy here: the HTTP client (and ``keel … --server``) imports this module too.
"""

from __future__ import annotations

import errno

from keel.errors import InsufficientStorage, KeelError, Unavailable

__all__ = [
    "FULL_ERRNOS",
    "PG_DISK_FULL",
    "SQLITE_FULL",
    "SQLITE_SHM_FULL",
    "is_disk_full",
    "storage_full",
]

#: SQLite's message for SQLITE_FULL.
SQLITE_FULL = "database or disk is full"
#: SQLite's extended code when a WAL database cannot grow its ``-shm`` file: it reads
#: ``disk I/O error``, not SQLITE_FULL, yet the unix VFS raises it only when writing a byte
#: at the end of each new shm page fails (or fstat does), which on a full volume is ENOSPC
#: and is what opening an existing WAL file there (keel.db, the job queue) meets first.
#: SQLite documents it as "may indicate that the underlying filesystem volume is out of
#: space", so it counts as full: the answer says to free space, which is what fixes it.
SQLITE_SHM_FULL = "SQLITE_IOERR_SHMSIZE"
#: PostgreSQL's SQLSTATE ``disk_full``.
PG_DISK_FULL = "53100"
#: ``OSError`` numbers that mean "no space": the disk is full or the quota used up.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How far down ``__cause__`` / ``__context__`` to look (the store wraps once or twice).
_MAX_DEPTH = 8


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` itself is a database's "disk full" error (causes not followed)."""
    if SQLITE_FULL in str(exc) or getattr(exc, "sqlstate", None) == PG_DISK_FULL:
        return True
    if getattr(exc, "sqlite_errorname", None) == SQLITE_SHM_FULL:
        return True
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    return orig is not None and orig is not exc and is_disk_full(orig)


def storage_full(exc: BaseException) -> InsufficientStorage | None:
    """:class:`InsufficientStorage` when ``exc`` or one of its causes says a disk is full,
    else None.

    ``exc`` itself when it already is one. A :class:`KeelError` other than
    :class:`Unavailable` (a ``Conflict``, an ``InvalidInput``) says what went wrong on its
    own and gives None, whatever its causes.
    """
    if isinstance(exc, KeelError) and not isinstance(exc, Unavailable):
        return None
    current: BaseException | None = exc
    for _ in range(_MAX_DEPTH):
        if current is None:
            return None
        if isinstance(current, InsufficientStorage):
            return current
        if isinstance(current, OSError) and current.errno in FULL_ERRNOS:
            where = f" ({current.filename})" if current.filename else ""
            return InsufficientStorage(
                f"cannot write: no space left on the disk{where}; free space, then retry",
                errno=errno.errorcode.get(current.errno or 0, str(current.errno)),
            )
        if is_disk_full(current):
            return InsufficientStorage(
                "cannot write: the database's disk is full (nothing was written); free space "
                "on the volume of the database (keel.db under KEEL_HOME, or the PostgreSQL "
                "server's), then retry",
                store="database",
            )
        current = current.__cause__ or current.__context__
    return None
