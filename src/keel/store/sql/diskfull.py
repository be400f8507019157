"""When a database last refused a write because its disk is full.

Which errors mean that is decided in :mod:`keel.store.storage_full` (SQLite's
``database or disk is full``, PostgreSQL's SQLSTATE 53100). The store notes the time of
each such refused write per engine, so readiness (``/readyz``) can report a database
that refuses writes for lack of space without writing anything itself: a probe that
writes would cost a transaction (and an fsync) on every poll, while the refused writes
of real requests are the signal.
"""

from __future__ import annotations

import threading
import time
import weakref

from sqlalchemy import Engine

from keel.store.storage_full import is_disk_full

__all__ = ["full_seen_within", "note_if_full"]

_seen: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


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
