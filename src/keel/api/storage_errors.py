"""A full disk under the database, the artifact store or the prediction log → 507.

Wherever a write meets a full disk — SQLite's ``database or disk is full``
(SQLITE_FULL), PostgreSQL's ``disk_full`` (SQLSTATE 53100), or ``OSError``
ENOSPC/EDQUOT from a file write — the caller gets ``507 insufficient_storage`` naming
what is full and what to do, never a 500. The store has already rolled the write back
(one transaction per request), so nothing partial is left. The store raises
``Unavailable`` for database errors; this module looks through its cause chain.
"""

from __future__ import annotations

import errno

from keel.errors import InsufficientStorage
from keel.store.sql.diskfull import is_disk_full

__all__ = ["storage_full"]

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How far down ``__cause__`` / ``__context__`` to look (the store wraps once or twice).
_MAX_DEPTH = 8


def storage_full(exc: BaseException) -> InsufficientStorage | None:
    """:class:`InsufficientStorage` when ``exc`` or one of its causes says a disk is full,
    else None."""
    current: BaseException | None = exc
    for _ in range(_MAX_DEPTH):
        if current is None:
            return None
        if isinstance(current, InsufficientStorage):
            return current
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
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
