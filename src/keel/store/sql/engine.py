"""Build the SQLAlchemy engine from :class:`~keel.config.Settings`."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from keel.config import Settings
from keel.errors import InsufficientStorage, InvalidInput
from keel.store.storage_full import storage_full

__all__ = [
    "NOWAIT_OPTION",
    "WRITE_OPTION",
    "begin_write",
    "ensure_dir",
    "is_sqlite",
    "make_engine",
]

#: Execution option marking a connection that will write (see the SQLite BEGIN hook).
WRITE_OPTION = "keel_write"
#: With WRITE_OPTION on SQLite: fail at once (SQLITE_BUSY) instead of waiting for the lock.
NOWAIT_OPTION = "keel_nowait"


def is_sqlite(url: str) -> bool:
    """True when ``url`` points at SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def begin_write(raw: sqlite3.Connection, *, nowait: bool, busy_ms: int | None = None) -> None:
    """``BEGIN IMMEDIATE`` on a sqlite3 connection; with ``nowait``, fail at once
    (``sqlite3.OperationalError: database is locked``) instead of waiting for the lock.

    Only BEGIN IMMEDIATE can wait (for the write lock): once it holds the lock, the
    connection's busy timeout (``busy_ms``, read from the connection when not given)
    goes back for everything else.
    """
    if not nowait:
        raw.execute("BEGIN IMMEDIATE")
        return
    if busy_ms is None:
        busy_ms = int(raw.execute("PRAGMA busy_timeout").fetchone()[0])
    raw.execute("PRAGMA busy_timeout=0")
    try:
        raw.execute("BEGIN IMMEDIATE")
    finally:
        raw.execute(f"PRAGMA busy_timeout={busy_ms}")


def ensure_dir(path: Path, setting: str) -> None:
    """Create ``path`` (and parents) or raise :class:`InvalidInput` naming it and ``setting``
    (:class:`InsufficientStorage` when its disk is full).

    A read-only or unwritable home used to surface as a PermissionError traceback (#15.13).
    """
    try:
        Path(path).expanduser().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if storage_full(exc) is not None:  # ENOSPC/EDQUOT: free space, not a bad setting
            raise InsufficientStorage(
                f"cannot create {path}: no space left on its disk; free space there, or set "
                f"{setting} to a folder on another disk",
                field=setting,
                errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
            ) from None
        raise InvalidInput(
            f"cannot create {path} ({exc.strerror or exc}): make it writable, or set "
            f"{setting} to a writable folder",
            field=setting,
        ) from None


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database; SQLite gets WAL, foreign keys and a busy timeout."""
    url = settings.resolved_database_url
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            setting = "KEEL_DATABASE_URL" if settings.database_url else "KEEL_HOME"
            ensure_dir(Path(database).expanduser().parent, setting)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
            },
            pool_size=8,
            max_overflow=16,
        )
        busy_ms = settings.sqlite_busy_timeout_ms

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, issue BEGIN, so that
            # "BEGIN IMMEDIATE" below takes the write lock up front.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            # WAL: readers never block the writer and commits are one append.
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process kill (kill -9); only an OS
            # crash / power loss can drop the last commits.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # busy_timeout: a second writer waits instead of failing with
            # "database is locked".
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Write transactions take the lock at BEGIN (IMMEDIATE) so two
            # read-then-write transactions cannot deadlock on lock upgrade,
            # which SQLite reports as SQLITE_BUSY without waiting. Reads stay
            # DEFERRED and run concurrently with the writer under WAL.
            # Straight on the sqlite3 connection: these statements need no result
            # handling, and SQLAlchemy's execution path costs ~0.1 ms per statement.
            options = conn.get_execution_options()
            raw = conn.connection.dbapi_connection
            try:
                if options.get(WRITE_OPTION, False):
                    begin_write(raw, nowait=options.get(NOWAIT_OPTION, False), busy_ms=busy_ms)
                else:
                    raw.execute("BEGIN")
            except sqlite3.OperationalError as exc:  # as SQLAlchemy would have raised it
                raise OperationalError("BEGIN", None, exc) from exc

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
