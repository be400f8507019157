"""Rules added to a monitor: concurrent resolutions keep every rule, a refused change
changes nothing.

Each writer resolves its own incident with its own rule, through its own embedded
:class:`keel.Client` (its own engine, as two CLI calls have) or its own server process
(two API replicas on one database); a barrier starts them together, and the race is
repeated so that the read-modify-write of the monitor's rules interleaves (review: "the
monitor save is not a compare-and-set").
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import server_process
from tests.decisions.conftest import register_churn

from keel import Client
from keel.errors import InvalidInput, NotFound
from keel.monitoring.models import MonitorSpec
from keel.monitoring.rules import parse_rule
from keel.services import Services

ROUNDS = 12
#: The race is repeated until ROUNDS or this many seconds, whichever comes first.
BUDGET_S = 40.0
FEATURES = ("tenure", "monthly_charges", "total_charges")


def _race(clients: list[Client], incidents: list[int], rules: list[str]) -> list[BaseException]:
    """Each client resolves its incident with its rule, all released by one barrier."""
    start, errors = threading.Barrier(len(clients)), []

    def resolve(n: int) -> None:
        start.wait()
        try:
            clients[n].resolve_decision(incidents[n], monitor="churn-quality", rule=rules[n])
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=resolve, args=(n,)) for n in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def _rounds(services: Services, clients: list[Client], rounds: int, budget_s: float) -> int:
    """Race ``rounds`` times (at most ``budget_s`` seconds), checking after each that every
    rule added so far is on the monitor; how many rounds ran."""
    expected: list[str] = []
    deadline, done = time.monotonic() + budget_s, 0
    while done < rounds and time.monotonic() < deadline:
        incidents = [
            services.decisions.record("rollback", "churn", f"round {done} writer {n}").id or 0
            for n in range(len(clients))
        ]
        rules = [
            parse_rule(f"null_share({FEATURES[n % 3]}) > {done + 1}e-3").text
            for n in range(len(clients))
        ]
        assert _race(clients, incidents, rules) == []
        expected += rules
        stored = services.monitors.get("churn-quality").rules
        assert sorted(r.text for r in stored) == sorted(expected), f"round {done}: rule lost"
        assert len({r.source for r in stored}) == len(expected)  # each names its resolution
        done += 1
    return done


def _churn_monitor(services: Services, train: pd.DataFrame) -> None:
    register_churn(services, train)
    services.monitors.create(MonitorSpec(name="churn-quality", model="churn", window="2h"))


def test_concurrent_resolutions_keep_every_monitor_rule(
    services: Services, churn_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _churn_monitor(services, churn_frames[0])
    with ExitStack() as stack:
        clients = [stack.enter_context(Client(settings=services.settings)) for _ in range(3)]
        # at least 3 rounds: enough repetitions to have raced, even on a slow machine
        assert _rounds(services, clients, ROUNDS, BUDGET_S) >= 3


def test_two_server_processes_keep_every_monitor_rule(
    services: Services, churn_frames: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    _churn_monitor(services, churn_frames[0])
    env = {"KEEL_HOME": str(services.settings.home), "KEEL_WORKER": "off"}
    if services.settings.database_url is not None:
        env["KEEL_DATABASE_URL"] = services.settings.database_url
    with ExitStack() as stack:
        clients = []
        for n in range(2):
            (tmp_path / f"server{n}").mkdir()
            url, _ = stack.enter_context(server_process(tmp_path / f"server{n}", **env))
            remote = services.settings.model_copy(update={"home": tmp_path / f"client{n}"})
            clients.append(stack.enter_context(Client(url, settings=remote)))
        assert _rounds(services, clients, ROUNDS, BUDGET_S) >= 3


def test_a_failed_update_leaves_the_monitor_and_its_author_as_they_were(
    services: Services, churn_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    register_churn(services, churn_frames[0])
    monitors = services.monitors
    monitors.create(MonitorSpec(name="churn-quality", model="churn"), actor="bo")
    created = monitors.get("churn-quality")  # a Monitor (create answers a SavedMonitor)

    def unknown_column(spec: MonitorSpec) -> MonitorSpec:
        return spec.model_copy(update={"rules": [parse_rule("mean(no_such) > 1")]})

    with pytest.raises(InvalidInput) as caught:
        monitors.update("churn-quality", unknown_column)
    assert caught.value.field == "rules" and monitors.get("churn-quality") == created
    with pytest.raises(NotFound):
        monitors.update("nope", lambda spec: spec)
    rule = parse_rule("mean(tenure) > 1")
    updated = monitors.update("churn-quality", lambda s: s.model_copy(update={"rules": [rule]}))
    assert updated == monitors.get("churn-quality") and updated.rules == [rule]
    assert (updated.created_by, updated.created_at_ms) == ("bo", created.created_at_ms)


def test_a_rule_past_the_hundredth_is_refused_before_anything_is_recorded(
    services: Services, churn_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    register_churn(services, churn_frames[0])
    rules = [parse_rule(f"max(tenure) > {n}") for n in range(100)]
    services.monitors.create(MonitorSpec(name="churn-quality", model="churn", rules=rules))
    incident = services.decisions.record("rollback", "churn", "rolled back").id or 0
    with Client(settings=services.settings) as client, pytest.raises(InvalidInput) as caught:
        client.resolve_decision(incident, monitor="churn-quality", rule="mean(tenure) > 1")
    assert caught.value.field == "check.rule" and "100" in caught.value.message
    assert services.decisions.query(kind="resolution") == []
    assert services.monitors.get("churn-quality").rules == rules
