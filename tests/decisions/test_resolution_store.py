"""Migration 0010 on a log that already has records, and the database's own guarantee that
an incident has at most one resolution (two resolvers racing past the service's check)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from keel.config import Settings
from keel.decisions.service import DecisionLog
from keel.errors import Conflict
from keel.store.sql.decisions import DecisionSql
from keel.store.sql.engine import make_engine
from keel.store.sql.migrate import current_revision, upgrade

# each test migrates its own database from empty
pytestmark = pytest.mark.fresh_database


def test_0010_keeps_existing_records_which_stay_open_incidents(settings: Settings) -> None:
    engine = make_engine(settings)
    assert upgrade(engine, "0009") == "0009"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO decisions (at_ms, model, kind, summary, details, actor, related) "
                "VALUES (1, 'churn', 'rollback', 'rolled back', '{}', 'policy', '{}'), "
                "(2, 'churn', 'diagnosis', 'quality break', '{\"action\": \"alert\"}', "
                "'trigger', '{}'), (3, 'churn', 'gate', 'failed', '{\"passed\": false}', "
                "'policy', '{}')"
            )
        )
    assert upgrade(engine, "0010") == "0010"
    assert current_revision(engine) == "0010"
    log = DecisionLog(DecisionSql(engine))
    assert [(d.kind, d.open, d.resolves) for d in log.query()] == [
        ("gate", False, None), ("diagnosis", True, None), ("rollback", True, None),
    ]  # fmt: skip
    assert [d.kind for d in log.query(open=True)] == ["diagnosis", "rollback"]
    assert [d.kind for d in log.query(open=False)] == ["gate"]
    engine.dispose()


def test_two_racing_resolutions_of_one_incident_keep_exactly_one(settings: Settings) -> None:
    engine = make_engine(settings)
    upgrade(engine)
    log = DecisionLog(DecisionSql(engine))
    incident = log.record("rollback", "churn", "rolled back")
    assert incident.id is not None
    start, outcomes = threading.Barrier(4), []

    def resolve(n: int) -> None:
        entry = log.build("resolution", "churn", f"resolver {n}").model_copy(
            update={"resolves": incident.id}
        )
        start.wait()
        try:
            outcomes.append(log.store.add_decisions([entry])[0].id)
        except Conflict as exc:
            outcomes.append(exc.field)

    threads = [threading.Thread(target=resolve, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if isinstance(o, int)]
    assert len(winners) == 1 and sorted(o for o in outcomes if o == "id") == ["id"] * 3
    assert log.get(incident.id).resolution == winners[0]
    assert len(log.query(kind="resolution")) == 1
    with pytest.raises(Conflict, match="already resolved"):
        log.store.add_decisions(
            [log.build("resolution", "churn", "late").model_copy(update={"resolves": incident.id})]
        )
    engine.dispose()
