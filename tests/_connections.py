"""Check that PostgreSQL connections opened under a test's name were all closed.

A connection left open and dropped is closed by the garbage collector later, with
psycopg's ResourceWarning in whichever test runs then; these helpers catch it in the test
that opened it.
"""

from __future__ import annotations

import gc
import time
import uuid
import warnings

from sqlalchemy import create_engine, make_url, text

__all__ = ["assert_no_connection_open", "named_url"]


def named_url(url: str) -> tuple[str, str]:
    """``url`` with a unique ``application_name``, and that name."""
    name = f"keel_test_{uuid.uuid4().hex[:8]}"
    named = make_url(url).update_query_dict({"application_name": name})
    return named.render_as_string(hide_password=False), name


def assert_no_connection_open(admin_url: str, name: str) -> None:
    """No session named ``name`` is open on the server, and a collection finds no
    connection dropped open (its ResourceWarning).

    A closed connection's server process ends a moment after the client hangs up, so the
    count may take up to a few seconds to reach 0; a connection left open never does.
    """
    engine = create_engine(admin_url)
    query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n")
    deadline = time.monotonic() + 5
    try:
        while True:
            # a transaction of its own each time: it sees pg_stat_activity as of its start
            with engine.connect() as conn:
                count = conn.execute(query, {"n": name}).scalar_one()
            if count == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        engine.dispose()
    assert count == 0, f"{count} connection(s) named {name} still open"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
