"""Run Alembic migrations programmatically (``keel db upgrade``, server start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from keel.config import Settings
from keel.errors import InsufficientStorage, InvalidInput, KeelError, Unavailable
from keel.store.sql.engine import ensure_dir, make_engine
from keel.store.storage_full import storage_full

__all__ = [
    "alembic_config",
    "current_revision",
    "ensure_schema",
    "head_revision",
    "is_known_revision",
    "open_engine",
    "store_error",
    "upgrade",
]

_SCRIPTS = Path(__file__).with_name("migrations")

# SQLite result codes (sqlite3 errors carry them as `sqlite_errorname`) that mean the
# file cannot be used as it is, and what the operator should do about each (#15.13).
_CORRUPT = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}
_NOT_WRITABLE = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR"}


def alembic_config(engine: Engine) -> Config:
    """An Alembic config bound to ``engine`` (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Upgrade the schema to ``revision``; returns the revision now current.

    Raises :class:`InvalidInput` for a database this keel cannot use (see
    :func:`ensure_schema`) instead of Alembic's or the driver's traceback.
    """
    try:
        _refuse_newer(engine, current_revision(engine))
        command.upgrade(alembic_config(engine), revision)
        return current_revision(engine)
    except DBAPIError as exc:
        raise store_error(engine, exc) from None


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database, or None when never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision this version of keel knows."""
    return ScriptDirectory(str(_SCRIPTS)).get_current_head()


def is_known_revision(revision: str) -> bool:
    """Whether this keel's migrations contain ``revision``."""
    try:
        return ScriptDirectory(str(_SCRIPTS)).get_revision(revision) is not None
    except Exception:  # alembic raises CommandError/ResolutionError for unknown ids
        return False


def ensure_schema(engine: Engine, *, migrate: bool = True) -> None:
    """Check that the database can be used and, with ``migrate``, upgrade it to head.

    Raises :class:`InvalidInput` (one line: the path or revision, and what to do) for
    a corrupt or unwritable SQLite file and for a schema written by a newer keel;
    :class:`InsufficientStorage` when the database's disk is full (as for a write);
    :class:`Unavailable` when the database server cannot be reached.
    """
    try:
        current = current_revision(engine)
    except DBAPIError as exc:
        raise store_error(engine, exc) from None
    if current == head_revision():
        return
    _refuse_newer(engine, current)
    if migrate:
        upgrade(engine)


def open_engine(settings: Settings, *, migrate: bool = True) -> Engine:
    """An engine for the configured database with its schema checked (and, with
    ``migrate``, upgraded): what every process that opens the store starts with."""
    ensure_dir(settings.home, "KEEL_HOME")
    engine = make_engine(settings)
    try:
        # one line naming the path or revision (InvalidInput, exit 2), not a driver traceback
        ensure_schema(engine, migrate=migrate)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _refuse_newer(engine: Engine, current: str | None) -> None:
    if current is None or is_known_revision(current):
        return
    raise InvalidInput(
        f"database {_where(engine)} has schema revision {current!r}, which this keel does "
        f"not know (newest here: {head_revision()!r}): it was written by a newer keel. "
        "Upgrade keel (pip install -U keelml), or point KEEL_DATABASE_URL/KEEL_HOME at "
        "another database",
        field="KEEL_DATABASE_URL",
        revision=current,
        head=head_revision(),
    )


def store_error(engine: Engine, exc: DBAPIError) -> KeelError:
    """The :class:`KeelError` for a driver error met while opening the database."""
    original = exc.orig
    name = getattr(original, "sqlite_errorname", None)
    reason = str(original).strip() or type(original).__name__
    where = _where(engine)
    if storage_full(exc) is not None:
        # the rule every write follows (SQLITE_FULL, a WAL file's shm that cannot grow,
        # PostgreSQL 53100): InsufficientStorage, exit 1 / 507, not a bad setting
        return InsufficientStorage(
            f"cannot write {where} ({reason.splitlines()[0]}): its disk is full; free space "
            "on its file system, then retry",
            field="KEEL_DATABASE_URL",
            store="database",
        )
    if name in _CORRUPT:
        return InvalidInput(
            f"{where} is not a usable SQLite database ({reason}): restore it from a "
            "backup, or move it away and keel starts a new one there",
            field="KEEL_DATABASE_URL",
        )
    if name in _NOT_WRITABLE:
        folder = Path(where).parent
        return InvalidInput(
            f"cannot open {where} for writing ({reason}): keel needs {folder} and the "
            "database file writable; fix their permissions (or the read-only mount), or "
            "set KEEL_HOME to a writable folder",
            field="KEEL_DATABASE_URL",
        )
    if name is None:  # a server database (PostgreSQL): not reachable or refused us
        return Unavailable(
            f"cannot use database {where} ({reason.splitlines()[0]}): check "
            "KEEL_DATABASE_URL and that the database server is up",
            field="KEEL_DATABASE_URL",
        )
    return InvalidInput(f"cannot use {where} ({reason})", field="KEEL_DATABASE_URL")


def _where(engine: Engine) -> str:
    """The SQLite file path, or the server URL without its password."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return str(url.database or ":memory:")
    return url.render_as_string(hide_password=True)
