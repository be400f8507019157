"""Acceptance of deployments, end to end: a real ``keel server`` process, its in-process job
worker running the controller (the ``deploy.evaluate`` job), real churn models, traffic and
delayed feedback over HTTP.

The schedule fires ``deploy.evaluate`` once a minute; to keep each test short the test
queues that same job itself (through the shared job queue) after each batch of traffic,
and the server's worker runs it, exactly as it runs the scheduled one. Sticky assignment
across a restart and across two servers sharing PostgreSQL + Redis are in
tests/serving/test_deployment_routing.py and test_deployment_replicas.py.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.deploy.conftest import FEATURES, register_models
from tests.serving.test_predlog_durability import keel_server

from keel import Client
from keel.config import Settings
from keel.demo.data import TARGET
from keel.services import Services, open_services

pytestmark = pytest.mark.slow

SERVING_DIR = Path(__file__).resolve().parents[1] / "serving"
#: The issue's minimal policy; only min_samples_per_step and min_dwell are smaller so that a
#: step fits in a test (and the error-rate guardrail's sample floor with them).
SEED_POLICY: dict[str, Any] = {
    "name": "churn-live",
    "model": "churn",
    "strategy": "canary",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}],
    "steps": [5, 25, 50, 100],
    "min_samples_per_step": 40,
    "min_dwell": "1s",
    "guardrails": {
        "error_rate": {"max_increase": 0.01, "min_samples": 30},
        "p99_latency": {"max_ratio": 2.0, "for": "5m"},
        "metric": {"name": "roc_auc", "min_improvement": 0.02, "relative": False},
    },
}
_keys = itertools.count()


@dataclass
class Live:
    """The running server and services of the test process over the same home."""

    url: str
    services: Services


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One ``keel server`` (SQLite, its job worker in-process) for the module's tests, each
    on a model of its own (starting a server takes seconds on a busy machine)."""
    home = tmp_path_factory.mktemp("acceptance")
    services = open_services(Settings(home=home / "keel"))
    env = {
        "KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S": "0.05",
        "KEEL_PREDICTION_LOG_FSYNC": "false",
        "KEEL_SERVING_TIMEOUT_S": "60",  # a loaded CI machine must not turn into 504s
        # only the evaluations the tests queue: the schedule must not step in between
        "KEEL_DEPLOY_EVALUATE_CRON": "0 0 1 1 *",
        # serving_faults.Raising stores itself: the server must trust its class
        "KEEL_TRUSTED_MODEL_CLASSES": "serving_faults:Raising",
        "PYTHONPATH": str(SERVING_DIR),
    }
    try:
        with keel_server(services.settings.home, home / "server.log", **env) as (port, _):
            yield Live(f"http://127.0.0.1:{port}", services)
    finally:
        services.close()


def _policy(model: str) -> dict[str, Any]:
    return {**SEED_POLICY, "name": f"{model}-live", "model": model}


def serve(url: str, name: str, rows: pd.DataFrame, threads: int = 4) -> list[dict[str, Any]]:
    """One request per row (a fresh routing key each) from ``threads`` clients; returns
    each answer with the row's true label."""
    answers: list[dict[str, Any]] = []
    chunks = np.array_split(np.arange(len(rows)), threads)

    def run(indices: np.ndarray[Any, Any]) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for i in indices:
                row = rows.iloc[int(i)]
                body = {
                    "instances": [{f: float(row[f]) for f in FEATURES}],
                    "probabilities": True,
                    "routing_key": f"user-{next(_keys)}",
                }
                got = http.post(f"/v1/deployments/{name}/predict", json=body)
                assert got.status_code == 200, got.text
                answers.append({**got.json(), "row": int(i), "label": int(row[TARGET])})

    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(answers) == len(rows)
    return answers


def feedback(url: str, answers: list[dict[str, Any]]) -> None:
    """The delayed labels, over HTTP; retried until the log has flushed every request."""
    items = [{"request_id": a["request_id"], "label": a["label"]} for a in answers]
    deadline = time.monotonic() + 10
    while True:
        got = httpx.post(f"{url}/v1/feedback", json={"items": items}, timeout=30)
        assert got.status_code == 200, got.text
        if got.json()["unknown"] == 0:
            return
        assert time.monotonic() < deadline, got.json()
        time.sleep(0.1)


class Load:
    """Background requests (one client) while the block runs: (sent at, arm) of each."""

    def __init__(self, url: str, name: str, rows: pd.DataFrame) -> None:
        self.url, self.name, self.rows = url, name, rows
        self.answers: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for i in range(10_000):  # bounded even if the block never ends
                if self._stop.is_set():
                    return
                row = self.rows.iloc[i % len(self.rows)]
                body = {
                    "instances": [{f: float(row[f]) for f in FEATURES}],
                    "routing_key": f"user-{next(_keys)}",
                }
                sent = time.monotonic()
                got = http.post(f"/v1/deployments/{self.name}/predict", json=body)
                assert got.status_code == 200, got.text
                self.answers.append((sent, got.json()["arm"]))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def evaluate(services: Services, url: str, name: str) -> dict[str, Any]:
    """Queue one ``deploy.evaluate`` job for ``name``; the server's worker runs it."""
    job = services.jobs.enqueue("deploy.evaluate", {"deployment": name}, actor="test")
    done = services.jobs.wait(job.id, timeout_s=30)
    assert done.status == "succeeded", done
    deployment: dict[str, Any] = httpx.get(f"{url}/v1/deployments/{name}").json()
    return deployment


def test_worse_challenger_is_rolled_back_under_load_naming_the_guardrail(
    live: Live, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    url, services, model, name = live.url, live.services, "worse", "worse-live"
    register_models(services.settings, churn_rows[0], "good", "shuffled", model)
    production = churn_rows[1]
    background = production.iloc[1800:]
    created = httpx.post(f"{url}/v1/deployments", json=_policy(model))
    assert created.status_code == 201, created.text
    current, shares = created.json(), []
    # A canary that looks worse is held at its step (analysis.hold_when_worse), so it is
    # judged on its 5% share: rows are sent again (new routing keys) until the test decides.
    rounds = [(0, 1000), (1000, 1400), (1400, 1800), *[(0, 900), (900, 1800)] * 3]
    for begin, end in rounds:
        shares.append(current["state"]["weights"]["canary"])
        answers = serve(url, name, production.iloc[begin:end])
        time.sleep(1.0)  # min_dwell
        feedback(url, answers)
        with Load(url, name, background) as load:
            current = evaluate(services, url, name)
            done = time.monotonic()
            time.sleep(0.5)
        if current["status"] != "active":
            break
    decisions = httpx.get(f"{url}/v1/deployments/{name}/decisions").json()
    assert current["status"] == "rolled_back", [d["summary"] for d in decisions]
    assert current["state"]["weights"] == {"primary": 100.0, "canary": 0.0}
    # under load: every request sent after the controller's rollback got the primary
    after = [arm for sent, arm in load.answers if sent > done]
    assert len(after) >= 5 and set(after) == {"primary"}
    rollback = next(d for d in decisions if d["kind"] == "rollback")
    assert rollback["actor"] == "policy"
    # Which rule fires first depends on how the sample falls: a significant regression,
    # or (R-DEP-03) an interval whose upper end stays below the +0.02 minimum improvement.
    summary = rollback["summary"]
    assert "regression: roc_auc" in summary or "improvement below the minimum" in summary, summary
    metric = rollback["details"]["metric"]
    assert metric["name"] == "roc_auc" and metric["high"] < 0.02
    if "regression" in summary:
        assert metric["high"] < 0 and metric["pvalue"] < 0.05
    assert metric["candidate"] < 0.6 < 0.75 < metric["primary"]
    numbers = rollback["details"]["numbers"]
    assert numbers["candidate"]["metric"]["value"] == pytest.approx(metric["candidate"])
    assert numbers["candidate"]["metric"]["n"] >= 40
    assert services.registry.get_model(model).aliases["champion"] == 1
    assert [w.arm for w in services.deployments.bad_windows(model, 2)] == ["canary"]
    # rolled back at its 5% step: never given more traffic while it looked worse
    assert set(shares) == {5.0}, shares
    held = [d for d in decisions if "looks worse so far" in d["summary"]]
    assert held and all(d["details"]["metric"]["difference"] < 0 for d in held)


def test_better_challenger_walks_every_step_and_becomes_champion(
    live: Live, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    url, services, model, name = live.url, live.services, "better", "better-live"
    register_models(services.settings, churn_rows[0], "one_feature", "good", model)
    production = churn_rows[1]
    shares: list[float] = []
    created = httpx.post(f"{url}/v1/deployments", json=_policy(model))
    assert created.status_code == 201, created.text
    current = created.json()
    for step in range(8):
        if current["status"] != "active":
            break
        share = current["state"]["weights"]["canary"]
        shares.append(share)
        # at 5 % the canary's rows are drawn by the routing keys' hash: 1,500 requests give
        # ~75 against min_samples_per_step 40 (1,000 gave ~50, short of 40 now and then)
        rows = production.sample(1500 if share < 10 else 400, random_state=step)
        answers = serve(url, name, rows)
        canary = sum(a["arm"] == "canary" for a in answers) / len(answers)
        assert abs(canary - share / 100) < 0.1  # the live split follows the step
        time.sleep(1.0)
        feedback(url, answers)
        current = evaluate(services, url, name)
    decisions = httpx.get(f"{url}/v1/deployments/{name}/decisions").json()
    after = serve(url, name, production.iloc[:40], threads=1)
    assert current["status"] == "promoted", decisions[0]["summary"]
    # every step in order, none skipped nor gone back to; a step may be looked at again
    # (a short sample, or at 50 % an improvement not yet significant at full-traffic
    # strength: ship needs the interval above +0.02)
    steps = [share for i, share in enumerate(shares) if i == 0 or share != shares[i - 1]]
    assert steps == [5.0, 25.0, 50.0] and shares == sorted(shares), shares
    assert current["state"]["weights"] == {"primary": 0.0, "canary": 100.0}
    assert current["state"]["alias_moved"] is True
    assert {(a["arm"], a["version"]) for a in after} == {("canary", 2)}
    assert services.registry.get_model(model).aliases["champion"] == 2
    history = services.registry.alias_history(model, "champion")
    assert (history[-1].from_version, history[-1].to_version, history[-1].actor) == (1, 2, "policy")
    kinds = [d["kind"] for d in reversed(decisions)]
    assert kinds[0] == "deployment_created" and kinds[-1] == "promotion"
    assert kinds.count("rollout_step") == 2 and "rollback" not in kinds
    assert kinds.count("evaluation") == len(shares)
    steps = [d for d in reversed(decisions) if d["kind"] == "rollout_step"]
    assert [(s["details"]["share"], s["details"]["next_share"]) for s in steps] == [
        (5.0, 25.0),
        (25.0, 50.0),
    ]
    promotion = decisions[0]
    assert "significant improvement: roc_auc" in " ".join(promotion["details"]["reasons"])


def test_raising_shadow_never_changes_a_live_answer(
    live: Live, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    from serving_faults import Raising

    url, model, name = live.url, "shadowed", "shadowed-live"
    train, production = churn_rows
    fitted = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    client = Client(settings=live.services.settings)
    with client.start_run("acceptance") as run:
        for each in (fitted, Raising()):
            run.log_model(each, registered_name=model, input_example=train[FEATURES][:5])
    client.close()
    policy = {
        "name": name,
        "model": model,
        "strategy": "shadow",
        "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "shadow"}],
    }
    rows = production.iloc[:200]
    expected = fitted.predict_proba(rows[FEATURES])[:, 1]
    assert httpx.post(f"{url}/v1/deployments", json=policy).status_code == 201
    answers = serve(url, name, rows, threads=2)
    deadline = time.monotonic() + 15
    while True:  # the copies are answered (and fail) off the response path
        status = httpx.get(f"{url}/v1/deployments/{name}").json()
        compared = status["shadow_comparison"]["shadow"]
        if compared["errors"] >= len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {(a["arm"], a["version"]) for a in answers} == {("primary", 1)}
    got = [a["probabilities"][0][1] for a in answers]
    assert np.allclose(got, [expected[a["row"]] for a in answers], rtol=0, atol=1e-9)
    assert status["status"] == "active"
    # the status says so, from the durable log: every copy failed, none compared
    assert (compared["errors"], compared["pairs"], compared["error_rate"]) == (len(rows), 0, 1.0)
    assert [r["replica"] for r in status["replicas"]] == list(compared["drops"]["by_replica"])
