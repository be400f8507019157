"""Closing what owns the gateway leaves none of its PostgreSQL connections open.

The gateway re-reads deployments (and aliases) in its loop's worker threads
(``asyncio.to_thread``), and feature definitions in its feature binder's threads. The
embedded client and the server that opened its own services used to dispose the engine
without waiting for a read still running there: its connection
went back to the discarded pool, stayed open, and was garbage-collected open later, in
whichever test ran then (psycopg's ResourceWarning, an ERROR under ``filterwarnings = error``).
Each test holds a lock on the table re-read so that a read is in flight when closing starts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from tests._connections import assert_no_connection_open, named_url
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.client import Client
from keel.config import Settings
from keel.errors import NotFound

pytestmark = pytest.mark.postgres


def _settings(schema_url: str, home: Path) -> tuple[Settings, str]:
    """Settings whose connections carry a unique application_name (returned with them)."""
    url, name = named_url(schema_url)
    settings = Settings(
        home=home,
        database_url=url,
        serving_alias_refresh_ms=20,  # deployments are re-read every 20 ms
        features_registry_refresh_s=0,  # feature definitions every 0.5 s (the binder's least)
        worker="off",
    )
    return settings, name


def _close_during_a_read(
    schema_url: str, close: Callable[[], object], table: str = "deployments"
) -> None:
    """``close()`` while the gateway's re-read of ``table`` waits for a lock, which is
    released half a second later; fails unless ``close`` returns within 30 s after that."""
    locker = create_engine(schema_url)
    conn = locker.connect()
    closed = threading.Event()
    try:
        conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        time.sleep(0.8)  # the next re-read now waits, in a worker thread
        closing = threading.Thread(target=lambda: (close(), closed.set()))
        closing.start()
        time.sleep(0.5)
    finally:
        conn.rollback()  # the read goes on
        conn.close()
        locker.dispose()
    closing.join(timeout=30)
    assert closed.is_set()


def test_client_close_waits_for_a_gateway_read_and_leaves_no_connection_open(
    postgres_url: str, postgres_schema_url: str, tmp_path: Path
) -> None:
    settings, name = _settings(postgres_schema_url, tmp_path / "keel")
    client = Client(settings=settings)
    with pytest.raises(NotFound):  # starts the embedded gateway
        client.predict("models:/absent@champion", [{"x": 1}])
    _close_during_a_read(postgres_schema_url, client.close)
    assert_no_connection_open(postgres_url, name)


def test_client_close_waits_for_a_feature_definitions_read(
    postgres_url: str, postgres_schema_url: str, tmp_path: Path
) -> None:
    settings, name = _settings(postgres_schema_url, tmp_path / "keel")
    client = Client(settings=settings)
    with pytest.raises(NotFound):  # starts the embedded gateway and its feature binder
        client.predict("models:/absent@champion", [{"x": 1}])
    _close_during_a_read(postgres_schema_url, client.close, table="feature_definitions")
    assert_no_connection_open(postgres_url, name)


def test_server_stop_waits_for_a_gateway_read_and_leaves_no_connection_open(
    postgres_url: str, postgres_schema_url: str, tmp_path: Path
) -> None:
    settings, name = _settings(postgres_schema_url, tmp_path / "keel")
    server = serve_in_thread(create_app(settings))  # the app opens (and closes) its services
    server.__enter__()
    _close_during_a_read(postgres_schema_url, lambda: server.__exit__(None, None, None))
    assert_no_connection_open(postgres_url, name)
