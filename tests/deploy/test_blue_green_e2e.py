"""Blue-green end to end: a real ``keel server`` process with two real churn models; the
switch (the controller's ``deploy.evaluate`` job, run by the server's worker) and the switch
back (a person's rollback over REST) are instant under continuous traffic, both versions
are warm beforehand, the prediction log names the arm of every answer and the cache never
serves blue's answers after the switch.

The switch is queued as a job in the shared job queue (as tests/deploy/test_acceptance.py
does) so that it runs in the server's process: a change made there is served from the
next request on, before the job is marked done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.deploy.conftest import FEATURES, register_models
from tests.serving.test_predlog_durability import keel_server

from keel.config import Settings
from keel.services import Services, open_services
from keel.serving import predictions

pytestmark = pytest.mark.slow

BLUE, GREEN = ("primary", 1), ("challenger", 2)
POLICY: dict[str, Any] = {
    "name": "churn-bg",
    "model": "churn",
    "strategy": "blue_green",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "challenger"}],
    # the first tick switches; the verification outlasts the test (no promotion meanwhile)
    "blue_green": {"switch_after": "0s", "verify": "1h"},
}


@dataclass
class Answer:
    """One answered request: when it was sent and answered (monotonic), and by whom."""

    sent: float
    answered: float
    arm: str
    version: int
    cached: bool
    repeated: bool  # the one body sent again and again (a cache hit once answered)
    request_id: str

    @property
    def who(self) -> tuple[str, int]:
        return (self.arm, self.version)


class Traffic:
    """One client sending requests back to back while the block runs: every other one the
    same body (cached after its first answer), the others a new row each."""

    def __init__(self, url: str, rows: pd.DataFrame) -> None:
        self.url, self.rows = url, rows
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        same = {f: float(self.rows.iloc[0][f]) for f in FEATURES}
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for i in range(20_000):  # bounded even if the block never ends
                if self._stop.is_set():
                    return
                repeated = i % 2 == 0
                row = self.rows.iloc[1 + (i // 2) % (len(self.rows) - 1)]
                instance = same if repeated else {f: float(row[f]) for f in FEATURES}
                body = {"instances": [instance], "routing_key": f"user-{i % 50}"}
                sent = time.monotonic()
                got = http.post(f"/v1/deployments/{POLICY['name']}/predict", json=body)
                answered = time.monotonic()
                if got.status_code != 200:
                    self.errors.append(got.text)
                    continue
                doc = got.json()
                self.answers.append(
                    Answer(
                        sent,
                        answered,
                        doc["arm"],
                        doc["version"],
                        doc["cached"],
                        repeated,
                        doc["request_id"],
                    )
                )

    def wait_for(self, n: int, timeout_s: float = 30) -> None:
        """Until ``n`` more answers arrived than now."""
        goal, deadline = len(self.answers) + n, time.monotonic() + timeout_s
        while len(self.answers) < goal:
            assert time.monotonic() < deadline and not self.errors, self.errors[:3]
            time.sleep(0.01)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Services]]:
    """A ``keel server`` (SQLite, its job worker in-process) and the test's own services
    over the same home."""
    services = open_services(Settings(home=tmp_path / "keel"))
    env = {
        "KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S": "0.05",
        "KEEL_PREDICTION_LOG_FSYNC": "false",
        "KEEL_SERVING_TIMEOUT_S": "60",
        # only the evaluation the test queues: the schedule must not step in
        "KEEL_DEPLOY_EVALUATE_CRON": "0 0 1 1 *",
    }
    try:
        with keel_server(services.settings.home, tmp_path / "server.log", **env) as (port, _):
            yield f"http://127.0.0.1:{port}", services
    finally:
        services.close()


def _loaded(url: str) -> set[int]:
    status = httpx.get(f"{url}/v1/serving/status", timeout=10).json()
    return {m["version"] for m in status["models"] if m["model"] == "churn"}


def _one_switch(window: list[Answer], before: tuple[str, int], after: tuple[str, int]) -> None:
    """In send order, ``before`` answers then ``after`` answers: at most one change."""
    changes = [i for i in range(1, len(window)) if window[i].who != window[i - 1].who]
    assert {a.who for a in window} <= {before, after}, {a.who for a in window}
    assert len(changes) <= 1, [(a.who, a.sent) for a in window]
    if changes:
        assert window[0].who == before and window[-1].who == after


def test_blue_green_switch_and_switch_back_are_instant_under_traffic(
    live: tuple[str, Services], churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    url, services = live
    register_models(services.settings, churn_rows[0], "one_feature", "good")
    created = httpx.post(f"{url}/v1/deployments", json=POLICY, timeout=30)
    assert created.status_code == 201, created.text
    assert created.json()["state"]["weights"] == {"primary": 100.0, "challenger": 0.0}
    name = POLICY["name"]

    # Both versions warm before any request reaches green: the switch loads nothing.
    deadline = time.monotonic() + 30
    while _loaded(url) != {1, 2}:
        assert time.monotonic() < deadline, httpx.get(f"{url}/v1/serving/status").json()
        time.sleep(0.1)

    with Traffic(url, churn_rows[1].iloc[:400]) as traffic:
        traffic.wait_for(60)
        switch_sent = time.monotonic()
        job = services.jobs.enqueue("deploy.evaluate", {"deployment": name}, actor="test")
        done = services.jobs.wait(job.id, timeout_s=30)
        switch_done = time.monotonic()
        assert done.status == "succeeded", done
        traffic.wait_for(60)
        back_sent = time.monotonic()
        rolled = httpx.post(
            f"{url}/v1/deployments/{name}/rollback", json={"reason": "switch back"}, timeout=30
        )
        back_done = time.monotonic()
        assert rolled.status_code == 200, rolled.text
        traffic.wait_for(60)
    assert not traffic.errors, traffic.errors[:3]
    answers = traffic.answers

    # Blue alone before the switch, green alone once the switch returned, blue alone once
    # the switch back returned; in between one change each, never back and forth.
    assert {a.who for a in answers if a.answered < switch_sent} == {BLUE}
    switched = [a for a in answers if switch_done < a.sent and a.answered < back_sent]
    assert len(switched) >= 50 and {a.who for a in switched} == {GREEN}
    assert {a.who for a in answers if a.sent > back_done} == {BLUE}
    _one_switch([a for a in answers if switch_sent <= a.answered < back_sent], BLUE, GREEN)
    _one_switch([a for a in answers if a.answered >= back_sent], GREEN, BLUE)
    # Instant: no answer after either change waited on a model load.
    assert max(a.answered - a.sent for a in answers) < 5.0

    # The cache: the repeated body was served from it by blue, then by green (its own
    # answer, computed once), never blue's cached answer after the switch.
    assert any(a.cached and a.repeated and a.who == BLUE for a in answers if a.sent < switch_sent)
    assert any(a.cached and a.who == GREEN for a in switched)
    assert all(a.who == GREEN for a in switched if a.cached)

    # The controller's switch and the person's switch back are on record.
    decisions = httpx.get(f"{url}/v1/deployments/{name}/decisions", timeout=10).json()
    kinds = [d["kind"] for d in reversed(decisions)]
    assert kinds == ["deployment_created", "evaluation", "rollout_step", "rollback"], kinds
    step = next(d for d in decisions if d["kind"] == "rollout_step")
    assert "switching to green" in step["summary"]
    assert (step["details"]["share"], step["details"]["next_share"]) == (0.0, 100.0)
    final = httpx.get(f"{url}/v1/deployments/{name}", timeout=10).json()
    assert final["status"] == "rolled_back"
    assert final["state"]["weights"] == {"primary": 100.0, "challenger": 0.0}
    assert services.registry.get_model("churn").aliases["champion"] == 1

    # Every answer's prediction-log row names the arm (and version) that answered it.
    by_id = {a.request_id: a for a in answers}
    deadline = time.monotonic() + 15
    while True:
        logged = predictions("churn", settings=services.settings).to_pandas()
        mine = logged[logged["request_id"].isin(list(by_id))]
        if len(mine) == len(by_id) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(mine) == len(by_id)
    assert set(mine["deployment"]) == {name}
    for rid, arm, version in mine[["request_id", "arm", "version"]].itertuples(index=False):
        assert (arm, int(version)) == by_id[rid].who, rid
    assert {"primary", "challenger"} <= set(mine["arm"])
