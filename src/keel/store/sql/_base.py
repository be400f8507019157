"""Session handling shared by the SQL store's aggregate modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from keel.errors import Conflict, Unavailable
from keel.store.sql.engine import WRITE_OPTION

__all__ = ["SqlBase"]


class SqlBase:
    """Owns the engine; hands out read and write sessions.

    Database exceptions never leave the store: integrity violations become
    :class:`Conflict`, lost connections / lock timeouts :class:`Unavailable`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (no write lock on SQLite)."""
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except OperationalError as exc:
            raise Unavailable(f"database unavailable: {exc.orig}") from exc

    @contextmanager
    def write(self, conflict: str = "record already exists") -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        try:
            with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
                with Session(conn, expire_on_commit=False) as session:
                    yield session
                    session.commit()
                conn.commit()
        except IntegrityError as exc:
            raise Conflict(conflict, reason=str(exc.orig).splitlines()[0]) from exc
        except OperationalError as exc:
            raise Unavailable(f"database unavailable: {exc.orig}") from exc

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
