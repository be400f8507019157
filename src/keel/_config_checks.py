"""Checks of the connection settings (KEEL_DATABASE_URL, KEEL_REDIS_URL) at startup.

Made when the settings are read, not at the first connect: SQLAlchemy's URL parser and
dialect loader, and redis-py's scheme check, fail there with tracebacks that do not name
the setting. A ValueError from here becomes ``error: KEEL_DATABASE_URL=...: <message>``
and exit code 2 (:mod:`keel.cli.main`).
"""

from __future__ import annotations

__all__ = ["check_database_url", "check_redis_url"]

#: (backend, driver) pairs keel runs on: SQLAlchemy's default driver of each
#: (``postgresql://`` is psycopg 3 in SQLAlchemy 2.1), and psycopg 3 named outright.
_DATABASE_DRIVERS = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})
_EXAMPLES = "sqlite:////path/keel.db or postgresql+psycopg://user@host/db"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def check_database_url(value: str) -> str:
    """``value`` if keel can store its metadata there, else ValueError saying what can."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(f"not a database URL ({_EXAMPLES})") from None
    try:
        pair = (url.get_backend_name(), url.get_driver_name())
    except ArgumentError:  # a dialect SQLAlchemy does not know (postgres://, oracle://, ...)
        pair = None
    if pair not in _DATABASE_DRIVERS:
        raise ValueError(
            f"keel keeps its metadata in SQLite or PostgreSQL (with psycopg 3): {_EXAMPLES}"
        )
    return value


def check_redis_url(value: str) -> str:
    """``value`` if redis-py accepts its scheme, else ValueError naming the schemes."""
    if not value.startswith(_REDIS_SCHEMES):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return value
