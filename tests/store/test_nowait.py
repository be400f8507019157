"""``nowait`` writes on SQLite: refused at once while another writer holds the lock,
nothing written; the fast lane then waits on a thread and the server stays responsive."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.config import Settings
from keel.services import Services
from keel.store.sql import WriteBusy


@contextmanager
def write_lock(settings: Settings) -> Iterator[None]:
    """Hold SQLite's write lock from another connection, as another process would."""
    database = settings.resolved_database_url.split("///", 1)[1]
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_nowait_write_is_refused_at_once_and_writes_nothing(sqlite_services: Services) -> None:
    run = sqlite_services.tracking.create_run("busy")
    assert sqlite_services.store.inline_writes
    with write_lock(sqlite_services.settings):
        started = time.monotonic()
        with pytest.raises(WriteBusy):
            sqlite_services.tracking.log_batch(
                run.id, metrics=[{"key": "k", "value": 1.0}], nowait=True
            )
        assert time.monotonic() - started < 0.5  # not the busy timeout
    assert sqlite_services.tracking.metric_history(run.id, "k") == []
    # the connection went back to the pool with its busy timeout: a waiting write waits
    sqlite_services.tracking.log_batch(run.id, metrics=[{"key": "k", "value": 2.0}])
    assert [m.value for m in sqlite_services.tracking.metric_history(run.id, "k")] == [2.0]


def test_lane_waits_on_a_thread_while_the_loop_keeps_serving(sqlite_services: Services) -> None:
    run = sqlite_services.tracking.create_run("busy")
    with serve_in_thread(create_app(services=sqlite_services)) as url:
        holding = threading.Event()
        released = threading.Event()

        def hold() -> None:
            with write_lock(sqlite_services.settings):
                holding.set()
                time.sleep(0.8)
            released.set()

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(5)
        answers: dict[str, object] = {}

        def post() -> None:
            answers["metric"] = httpx.post(
                f"{url}/v1/runs/{run.id}/metrics", json={"key": "k", "value": 3.0}, timeout=30
            ).status_code
            answers["after_release"] = released.is_set()

        poster = threading.Thread(target=post)
        poster.start()
        time.sleep(0.2)
        health = httpx.get(f"{url}/healthz", timeout=5)  # the event loop is not blocked
        assert health.status_code == 200 and not released.is_set()
        poster.join(30)
        holder.join(30)
        assert answers == {"metric": 204, "after_release": True}
    assert [m.value for m in sqlite_services.tracking.metric_history(run.id, "k")] == [3.0]
