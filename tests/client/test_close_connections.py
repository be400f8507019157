"""Closing an embedded client leaves none of its PostgreSQL connections open.

The embedded gateway re-reads deployments (and aliases) in worker threads. Closing the
client used to stop the gateway's loop without waiting for a read still running there,
then dispose the engine: the read's connection went back to the discarded pool, stayed
open, and was garbage-collected open later, in whichever test ran then (psycopg's
ResourceWarning, an ERROR under ``filterwarnings = error``).
"""

from __future__ import annotations

import gc
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from keel.client import Client
from keel.config import Settings
from keel.errors import NotFound


def _open_connections(admin_url: str, name: str) -> int:
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n")
            return int(conn.execute(query, {"n": name}).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_close_waits_for_a_gateway_read_and_leaves_no_connection_open(
    postgres_url: str, postgres_schema_url: str, tmp_path: Path
) -> None:
    name = f"keel_close_{uuid.uuid4().hex[:8]}"
    url = make_url(postgres_schema_url).update_query_dict({"application_name": name})
    settings = Settings(
        home=tmp_path / "keel",
        database_url=url.render_as_string(hide_password=False),
        serving_alias_refresh_ms=20,  # deployments are re-read every 20 ms
    )
    client = Client(settings=settings)
    with pytest.raises(NotFound):  # starts the embedded gateway
        client.predict("models:/absent@champion", [{"x": 1}])
    locker = create_engine(postgres_schema_url)
    conn = locker.connect()
    closed = threading.Event()
    try:
        # the gateway's next re-read of deployments waits for this lock, in a worker thread
        conn.execute(text("LOCK TABLE deployments IN ACCESS EXCLUSIVE MODE"))
        time.sleep(0.3)
        closing = threading.Thread(target=lambda: (client.close(), closed.set()))
        closing.start()
        time.sleep(0.5)
    finally:
        conn.rollback()  # the read goes on
        conn.close()
        locker.dispose()
    closing.join(timeout=30)
    assert closed.is_set()
    assert _open_connections(postgres_url, name) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
