"""Check that PostgreSQL connections opened under a test's name were all closed.

A connection left open and dropped is closed by the garbage collector later, with
psycopg's ResourceWarning in whichever test runs then; these helpers catch it in the test
that opened it.
"""

from __future__ import annotations

import gc
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
    connection dropped open (its ResourceWarning)."""
    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n")
            assert conn.execute(query, {"n": name}).scalar_one() == 0
    finally:
        engine.dispose()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
