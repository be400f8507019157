"""A metric write whose transaction SQLite already rolled back on its own (it does so on
SQLITE_FULL, SQLITE_IOERR and a trigger's RAISE(ROLLBACK)) reports that error, not
"cannot rollback - no transaction is active" from keel's own ROLLBACK after it."""

from __future__ import annotations

import sqlite3

import pytest

from keel.errors import Conflict
from keel.services import Services


def test_write_rolled_back_by_sqlite_reports_its_own_error(sqlite_services: Services) -> None:
    run = sqlite_services.tracking.create_run("rolled-back")
    assert sqlite_services.store.inline_writes  # the one-metric fast write is the path taken
    database = sqlite_services.settings.resolved_database_url.split("///", 1)[1]
    with sqlite3.connect(database, isolation_level=None) as other:
        other.execute(
            "CREATE TRIGGER refuse_metric BEFORE INSERT ON metrics "
            "BEGIN SELECT RAISE(ROLLBACK, 'refused by a trigger'); END"
        )
    with pytest.raises(Conflict):
        sqlite_services.tracking.log_batch(run.id, metrics=[{"key": "k", "value": 1.0}])
    with sqlite3.connect(database, isolation_level=None) as other:
        other.execute("DROP TRIGGER refuse_metric")
    # nothing was written, and the pooled connection still works
    assert sqlite_services.tracking.metric_history(run.id, "k") == []
    sqlite_services.tracking.log_batch(run.id, metrics=[{"key": "k", "value": 2.0}])
    assert [m.value for m in sqlite_services.tracking.metric_history(run.id, "k")] == [2.0]
