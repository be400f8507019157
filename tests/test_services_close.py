"""``Services.close`` releases the database even when an earlier step of closing fails.

Closing writes the buffered feature usage before the engine is disposed; a failed write
(the database refusing it) used to skip the dispose, leaving the pooled PostgreSQL
connections to the garbage collector (psycopg's ResourceWarning in a later test).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from tests._connections import assert_no_connection_open, named_url
from tests.features.conftest import write_seed

from keel.config import Settings
from keel.services import open_services


@pytest.mark.postgres
def test_close_disposes_the_engine_when_the_usage_flush_fails(
    tmp_path: Path, postgres_url: str, postgres_schema_url: str
) -> None:
    url, name = named_url(postgres_schema_url)
    services = open_services(Settings(home=tmp_path / "keel", database_url=url))
    services.features.apply(write_seed(tmp_path / "data").defs)
    services.features.get_online_features([{"customer_id": 1}], ["customer_account:tenure_days"])
    admin = create_engine(postgres_schema_url)
    with admin.begin() as conn:  # the buffered usage has nowhere to go
        conn.execute(text("DROP TABLE feature_usage"))
    admin.dispose()
    with pytest.raises(DBAPIError, match="feature_usage"):
        services.close()
    assert_no_connection_open(postgres_url, name)
