"""The high-water mark of incremental updates (R-TRN-09) read from real tracking runs on
SQLite: committed vs claimed, a failed run's range given back, a race resolved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.automation.retrain import marks
from keel.config import Settings
from keel.services import Services, open_services
from keel.tracking.models import Run, RunStatus

EXPERIMENT = "retrain-churn"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    services = open_services(Settings(home=tmp_path / "keel"))
    yield services
    services.close()


def claim(
    svc: Services,
    low: int,
    high: int,
    status: RunStatus | None,
    outcome: str = "updated",
    **kw: int,
) -> Run:
    run = svc.tracking.create_run(
        EXPERIMENT,
        tags={
            marks.MODEL_TAG: "churn",
            marks.FROM_TAG: str(low),
            marks.TO_TAG: str(high),
            marks.OUTCOME_TAG: outcome,
        },  # fmt: skip
        **kw,
    )
    if status is not None:
        svc.tracking.finish_run(run.id, status)
    return svc.tracking.get_run(run.id)


def test_the_committed_mark_counts_finished_runs_the_claim_running_ones_too(
    svc: Services,
) -> None:
    assert marks.high_water_mark(svc, "churn") == 0  # no experiment yet
    claim(svc, 0, 100, RunStatus.FINISHED, start_time_ms=1)
    claim(svc, 100, 200, RunStatus.FINISHED, "quarantined", start_time_ms=2)
    claim(svc, 200, 300, None, start_time_ms=3)  # a worker died mid-update: still claimed
    claim(svc, 300, 400, RunStatus.FAILED, start_time_ms=4)  # gives its range back
    found = marks.claims(svc, EXPERIMENT, "churn", lookback_ms=1_000)
    assert (found.committed_ms, found.claimed_ms) == (200, 300)
    assert found.quarantined == [(100, 200)]
    assert marks.high_water_mark(svc, "churn") == 200
    # another model's runs in the same experiment do not count
    other = svc.tracking.create_run(
        EXPERIMENT, tags={marks.MODEL_TAG: "fraud", marks.FROM_TAG: "0", marks.TO_TAG: "9999"}
    )
    svc.tracking.finish_run(other.id, RunStatus.FINISHED)
    assert marks.high_water_mark(svc, "churn") == 200


def test_of_two_runs_racing_for_the_same_labels_the_later_steps_back(svc: Services) -> None:
    claim(svc, 0, 100, RunStatus.FINISHED, start_time_ms=1)
    first = claim(svc, 100, 250, None, start_time_ms=10)
    second = claim(svc, 100, 260, None, start_time_ms=11)
    assert marks.superseded(svc, EXPERIMENT, "churn", first) is None
    loser = marks.superseded(svc, EXPERIMENT, "churn", second)
    assert loser is not None and loser.id == first.id
    # the loser steps back (KILLED): the claim is the winner's again
    svc.tracking.finish_run(second.id, RunStatus.KILLED)
    assert marks.claims(svc, EXPERIMENT, "churn").claimed_ms == 250
    # the next run claims after it and overlaps nobody
    after = claim(svc, 250, 300, None, start_time_ms=12)
    assert marks.superseded(svc, EXPERIMENT, "churn", after) is None
