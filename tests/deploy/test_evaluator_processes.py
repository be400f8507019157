"""One evaluator at a time across real OS processes (the controller's SQL lease,
``store.acquire_lease``), on SQLite and on PostgreSQL.

Two Python processes open their own services over the same database and prediction log
and call ``evaluate_all`` at the same moments, one tick per controller minute. Their
clocks run fast and together: one controller minute is :data:`TICK_S` seconds of real
time from a start both are given, so leases (60 s by default) expire in seconds. Each
process says when it is inside an evaluation (the labels read, which only happens under
the lease): exactly one process per tick, one evaluation record per tick, and a lease
holder killed with SIGKILL mid-evaluation is replaced once its lease has expired.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
from tests.deploy.conftest import POLICY, START_MS, Models, log_traffic

from keel.config import Settings
from keel.services import Services

#: Real seconds per controller minute.
TICK_S = 2.0
MINUTE_MS = 60_000
NAME = "churn-live"

#: A controller process: ``evaluate_all`` at the start of each of its ticks, each outcome a
#: JSON line on stdout; with ``hang`` it stops for good inside its first evaluation,
#: holding the lease, to be killed there. Its start (epoch seconds) comes on stdin.
EVALUATOR = """
import json, os, sys, time
from pathlib import Path
from keel.config import Settings
from keel.services import open_services

conf = json.loads(sys.argv[1])
start_ms, minute_ms, tick_s = conf["start_ms"], conf["minute_ms"], conf["tick_s"]
services = open_services(Settings(home=Path(conf["home"]), database_url=conf["url"]))
pid = os.getpid()

def say(*event):
    print(json.dumps(event), flush=True)

say("ready", pid)
t0 = float(sys.stdin.readline())

def clock():
    return start_ms + int((time.time() - t0) * minute_ms / tick_s)

deployments = services.deployments
deployments.clock = deployments.decision_log.clock = clock
deployments.lease_ttl_s = conf["lease_ttl_s"]
labels = deployments.labels

def watched(*args, **kwargs):
    say("inside", pid, clock())
    if conf["hang"]:
        time.sleep(3600)  # killed here, the lease held
    return labels(*args, **kwargs)

deployments.labels = watched
for k in conf["ticks"]:
    delay = t0 + k * tick_s - time.time()
    if delay > 0:
        time.sleep(delay)
    began = clock()
    outcome = deployments.evaluate_all().get(conf["name"], "not active")
    say("tick", pid, k, began, outcome)
services.close()
say("done", pid)
"""


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """The evaluators a test starts; any still running at its end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdin is not None:
            process.stdin.close()


def _start(
    settings: Settings,
    processes: list[subprocess.Popen[str]],
    plans: list[tuple[list[int], bool]],
    lease_ttl_s: int,
) -> queue.Queue[tuple[Any, ...]]:
    """Start one evaluator per (ticks, hang) plan into ``processes``; once all are ready,
    give them the same start (a second from now); returns the queue of their events."""
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    for ticks, hang in plans:
        conf = {
            "home": str(settings.home),
            "url": settings.database_url,
            "ticks": ticks,
            "hang": hang,
            "lease_ttl_s": lease_ttl_s,
            "name": NAME,
            "start_ms": START_MS,
            "minute_ms": MINUTE_MS,
            "tick_s": TICK_S,
        }
        process = subprocess.Popen(
            [sys.executable, "-c", EVALUATOR, json.dumps(conf)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=_read, args=(process, events), daemon=True).start()
        processes.append(process)
    ready = _collect(events, lambda seen: len(seen) == len(plans))
    assert {e[0] for e in ready} == {"ready"}, ready
    t0 = time.time() + 1.0
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{t0!r}\n")
        process.stdin.flush()
    return events


def _read(process: subprocess.Popen[str], events: queue.Queue[tuple[Any, ...]]) -> None:
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            events.put(tuple(json.loads(line)))


def _collect(
    out: queue.Queue[tuple[Any, ...]], until: Callable[[list[tuple[Any, ...]]], bool]
) -> list[tuple[Any, ...]]:
    """Events from ``out`` until ``until(events so far)``; 60 s at most (imports take
    seconds on a busy machine)."""
    events: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 60
    while not until(events):
        assert time.monotonic() < deadline, events
        events.append(out.get(timeout=60))
    return events


def _tick_of(at_ms: int) -> int:
    return (at_ms - START_MS) // MINUTE_MS


def _create(
    services: Services,
    register: Callable[[str, str], Models],
    rows: pd.DataFrame,
    ticks: int,
    **policy: Any,
) -> None:
    """churn-live at START_MS, and labelled traffic of both arms over the ticks to come."""
    models = register("weak", "good")
    services.deployments.clock = lambda: START_MS
    services.deployments.create({**POLICY, **policy}, actor="ana")
    log_traffic(
        services,
        models,
        rows,
        deployment=NAME,
        arms={"primary": 1, "canary": 2},
        shares={"primary": 50.0, "canary": 50.0},
        start_ms=START_MS - MINUTE_MS,
        end_ms=START_MS + ticks * MINUTE_MS,
    )


def test_two_processes_evaluating_at_once_make_one_evaluation_per_tick(
    services: Services,
    processes: list[subprocess.Popen[str]],
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    ticks = 6
    _create(services, register_churn, churn_rows[1].iloc[:1200], ticks)
    out = _start(services.settings, processes, [(list(range(ticks)), False)] * 2, 60)
    events = _collect(out, lambda seen: sum(e[0] == "done" for e in seen) == 2)
    for process in processes:
        assert process.wait(10) == 0

    outcomes: dict[int, list[str]] = defaultdict(list)
    for _, _pid, k, _began, outcome in (e for e in events if e[0] == "tick"):
        outcomes[k].append(outcome)
    # both processes tried every tick; while the rollout ran, exactly one evaluated
    assert sorted(outcomes) == list(range(ticks))
    running = [k for k in range(ticks) if outcomes[k] != ["not active"] * 2]
    assert running and running == list(range(len(running))), outcomes
    for k in running:
        assert sorted(outcomes[k]) == ["evaluated", "skipped"], (k, outcomes[k])
    # and only that process read anything: never two evaluators in one tick
    inside: dict[int, set[int]] = defaultdict(set)
    for _, pid, at in (e for e in events if e[0] == "inside"):
        inside[_tick_of(at)].add(pid)
    assert sorted(inside) == running and all(len(p) == 1 for p in inside.values()), inside
    assert len({p for pids in inside.values() for p in pids}) >= 1

    records = services.decisions.query(deployment=NAME, limit=500)
    evaluations = [d for d in records if d.kind == "evaluation"]
    per_tick = Counter(_tick_of(d.at_ms) for d in evaluations)
    assert sorted(per_tick) == running and set(per_tick.values()) == {1}, per_tick
    # no decision recorded twice: each step's move once, in order
    moves = [
        (d.details["share"], d.details["next_share"])
        for d in reversed(records)
        if d.kind == "rollout_step"
    ]
    assert len(set(moves)) == len(moves) and moves == sorted(moves), moves
    assert len({(d.kind, d.at_ms) for d in records}) == len(records)


def test_a_killed_lease_holder_is_replaced_once_its_lease_expires(
    services: Services,
    processes: list[subprocess.Popen[str]],
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    ticks, ttl_s = 6, 150  # the lease outlives two ticks, not three
    _create(services, register_churn, churn_rows[1].iloc[:600], ticks, min_dwell="1d")
    plans = [([0], True), (list(range(1, ticks)), False)]
    out = _start(services.settings, processes, plans, ttl_s)
    holder, other = processes
    events = _collect(out, lambda seen: any(e[0] == "inside" for e in seen))
    _, pid, held_at = next(e for e in events if e[0] == "inside")
    assert pid == holder.pid
    holder.send_signal(signal.SIGKILL)  # mid-evaluation, the lease held
    assert holder.wait(10) == -signal.SIGKILL
    events += _collect(out, lambda seen: any(e[0] == "done" for e in seen))
    assert other.wait(10) == 0

    taken_from, expired_by = START_MS, held_at + ttl_s * 1000  # bounds of the lease's expiry
    tried = [(began, outcome) for _, _, _, began, outcome in (e for e in events if e[0] == "tick")]
    assert len(tried) == ticks - 1
    assert all(o == "skipped" for b, o in tried if b < taken_from + ttl_s * 1000), tried
    assert all(o == "evaluated" for b, o in tried if b > expired_by), tried
    # skipped while the dead holder's lease ran (ticks 1 and 2 at least), then took over
    kinds = [o for _, o in tried]
    first = kinds.index("evaluated")
    assert first >= 2 and kinds == ["skipped"] * first + ["evaluated"] * (len(kinds) - first)

    evaluations = services.decisions.query(deployment=NAME, kind="evaluation", limit=100)
    # the killed holder committed nothing; the other evaluated once per tick after expiry
    taken = [_tick_of(began) for began, o in tried if o == "evaluated"]
    assert sorted(_tick_of(d.at_ms) for d in evaluations) == taken
    assert all(d.at_ms > taken_from + ttl_s * 1000 for d in evaluations)
    assert services.deployments.get(NAME).status == "active"
