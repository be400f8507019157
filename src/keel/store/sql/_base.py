"""Session handling shared by the SQL store's aggregate modules."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from keel.errors import Conflict, InvalidInput, Unavailable
from keel.store.sql.diskfull import note_if_full
from keel.store.sql.engine import NOWAIT_OPTION, WRITE_OPTION

__all__ = ["SqlBase", "WriteBusy", "refused_value", "upsert", "upsert_statement"]

log = logging.getLogger("keel.store")


class WriteBusy(Exception):
    """A ``nowait`` write found the database locked by another writer; nothing was written.

    Not a :class:`~keel.errors.KeelError`: it never reaches a user. The caller that asked
    not to wait retries the waiting way (see :mod:`keel.api.fastlane`).
    """


class SqlBase:
    """Owns the engine; hands out read and write sessions.

    Database exceptions never leave the store: integrity violations become
    :class:`Conflict`, lost connections / lock timeouts :class:`Unavailable`, a value the
    column cannot hold :class:`InvalidInput` (:func:`refused_value`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (no write lock on SQLite)."""
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except DataError as exc:
            raise refused_value(exc) from exc
        except OperationalError as exc:
            note_if_full(self.engine, exc)
            raise Unavailable(f"database unavailable: {exc.orig}") from exc

    @property
    def inline_writes(self) -> bool:
        """Whether small writes may run on the caller's event loop (SQLite: a local file).

        See :mod:`keel.api.fastlane`: such a write takes a fraction of a millisecond,
        while handing it to a thread and back costs as much again on an idle machine.
        """
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def write_conn(
        self,
        conflict: str = "write conflicts with existing data",
        field: str | None = None,
        *,
        nowait: bool = False,
    ) -> Iterator[Connection]:
        """A Core connection in a write transaction that commits on success.

        An integrity violation becomes ``Conflict(conflict, field=field)``; the
        database's own message is logged, not returned, since it names tables
        and differs between SQLite and PostgreSQL. ``nowait`` (SQLite): raise
        :class:`WriteBusy` at once, before anything is written, when another writer
        holds the lock, instead of waiting up to the busy timeout.
        """
        options = {WRITE_OPTION: True, NOWAIT_OPTION: nowait}
        try:
            with self.engine.connect().execution_options(**options) as conn:
                with conn.begin():
                    yield conn
        except IntegrityError as exc:
            log.info("integrity error: %s", exc.orig)
            raise Conflict(conflict, field=field) from exc
        except DataError as exc:
            raise refused_value(exc) from exc
        except OperationalError as exc:
            if nowait and "locked" in str(exc.orig):
                raise WriteBusy("the database is locked by another writer") from exc
            note_if_full(self.engine, exc)  # /readyz reports it (keel.store.sql.diskfull)
            raise Unavailable(f"database unavailable: {exc.orig}") from exc

    @contextmanager
    def write(
        self, conflict: str = "record already exists", field: str | None = None
    ) -> Iterator[Session]:
        """An ORM session inside :meth:`write_conn`'s transaction (same error mapping)."""
        with self.write_conn(conflict, field) as conn:
            # The session joins the connection's transaction; write_conn commits it.
            with Session(conn, expire_on_commit=False) as session:
                yield session
                session.flush()

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def refused_value(exc: DataError) -> InvalidInput:
    """The database refused a value of the request: a safety net behind the services' checks.

    The services bound what they can name (:func:`keel._models.stored_int`: a version or an
    id beyond an INTEGER column is a 422 naming its field); what they cannot foresee, such
    as a NUL character in any text PostgreSQL stores (SQLite keeps it) or a number a filter
    did not bound, is still the caller's input, not a server error. It names no field: the
    driver's message names none.
    """
    log.info("value refused by the database: %s", exc.orig)
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "out of range"
    return InvalidInput(f"a value in the request cannot be stored: {reason}")


def upsert(
    conn: Connection,
    table: Table | Any,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    update: Sequence[str],
    only_if: Callable[[Any], ColumnElement[bool]] | None = None,
) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET update [WHERE only_if(excluded)]``.

    One statement on both SQLite and PostgreSQL, so concurrent writers cannot
    interleave between a read and a write. The statement is built once per
    dialect and shape: building ``on_conflict_do_update`` was a quarter of the
    cost of logging one metric.
    """
    if not rows:
        return
    statement = upsert_statement(conn.dialect.name, table, tuple(keys), tuple(update), only_if)
    conn.execute(statement, list(rows))


_UPSERTS: dict[tuple[Any, ...], Any] = {}


def upsert_statement(
    dialect_name: str,
    table: Any,
    keys: tuple[str, ...],
    update: tuple[str, ...],
    only_if: Callable[[Any], ColumnElement[bool]] | None,
) -> Any:
    """The statement :func:`upsert` executes, built once per dialect and shape."""
    # Rows go in as execute() parameters, not .values(): the statement then has
    # a stable cache key and compiles once per process.
    cache_key = (dialect_name, table, keys, update, only_if)
    statement = _UPSERTS.get(cache_key)
    if statement is None:
        dialect = sqlite if dialect_name == "sqlite" else postgresql
        insert_ = dialect.insert(table)
        excluded = insert_.excluded
        statement = insert_.on_conflict_do_update(
            index_elements=list(keys),
            set_={name: excluded[name] for name in update},
            where=only_if(excluded) if only_if else None,
        )
        _UPSERTS[cache_key] = statement
    return statement
