"""Which database errors mean "the disk is full", and when one was last seen.

SQLite says ``database or disk is full`` (SQLITE_FULL); PostgreSQL raises SQLSTATE
53100 (``disk_full``). The store notes the time of each such refused write per engine,
so readiness (``/readyz``) can report a database that refuses writes for lack of space
without writing anything itself: a probe that writes would cost a transaction (and an
fsync) on every poll, while the refused writes of real requests are the signal.
"""

from __future__ import annotations

import threading
import time
import weakref

from sqlalchemy import Engine

__all__ = ["PG_DISK_FULL", "SQLITE_FULL", "full_seen_within", "is_disk_full", "note_if_full"]

SQLITE_FULL = "database or disk is full"
PG_DISK_FULL = "53100"

_seen: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` itself is a database's "disk full" error (causes not followed)."""
    if SQLITE_FULL in str(exc) or getattr(exc, "sqlstate", None) == PG_DISK_FULL:
        return True
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    return orig is not None and orig is not exc and is_disk_full(orig)


def note_if_full(engine: Engine, exc: BaseException) -> None:
    """Remember now as the last refused write of ``engine`` when ``exc`` is disk-full."""
    if is_disk_full(exc):
        with _lock:
            _seen[engine] = time.monotonic()


def full_seen_within(engine: Engine, seconds: float) -> float | None:
    """Seconds since ``engine`` last refused a write for lack of space, if within
    ``seconds``; else None."""
    with _lock:
        at = _seen.get(engine)
    if at is None:
        return None
    age = time.monotonic() - at
    return age if age <= seconds else None
