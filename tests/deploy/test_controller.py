"""The controller over a real prediction log and real labels: roll back a worse canary,
walk a better one to champion, resume after a restart, one evaluator at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pandas as pd
from tests.deploy.conftest import POLICY, START_MS, Clock, Models
from tests.deploy.conftest import serve_step as _serve_step

from keel.deploy.controller import evaluate_deployment
from keel.deploy.service import DeploymentService
from keel.services import Services


def test_worse_canary_is_rolled_back_naming_the_guardrail_and_its_numbers(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("good", "weak")
    service.create(POLICY, actor="ana")
    rows = churn_rows[1].iloc[:1200]
    _serve_step(services, models, rows, clock, latency_ms={"primary": 5.0, "canary": 15.0})
    after = service.evaluate("churn-live")
    assert after is not None and after.status == "rolled_back"
    assert after.weights == {"primary": 100.0, "canary": 0.0}
    rollback = services.decisions.query(deployment="churn-live", kind="rollback")[0]
    assert rollback.actor == "policy"
    assert "guardrail breached: p99_latency" in rollback.summary
    breached = {g["name"]: g for g in rollback.details["guardrails"]}["p99_latency"]
    assert breached["breached"] and breached["observed"] > 2.0 and breached["threshold"] == 2.0
    numbers = rollback.details["numbers"]
    assert numbers["candidate"]["p99_latency_ms"] > 2 * numbers["primary"]["p99_latency_ms"]
    windows = service.bad_windows("churn", 2)
    assert [(w.arm, w.from_ms, w.to_ms) for w in windows] == [("canary", START_MS, clock.now)]
    assert services.registry.get_model("churn").aliases["champion"] == 1


def test_better_canary_walks_every_step_and_becomes_champion(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    service.create(POLICY, actor="ana")
    production = churn_rows[1]
    shares = []
    for _ in range(8):
        current = service.get("churn-live")
        if current.status != "active":
            break
        shares.append(current.weights["canary"])
        rows = production.sample(
            1500 if current.weights["canary"] < 10 else 600, random_state=len(shares)
        )
        _serve_step(services, models, rows, clock)
        service.evaluate("churn-live")
    final = service.get("churn-live")
    assert final.status == "promoted", services.decisions.query(deployment="churn-live")[0].summary
    assert shares == [5.0, 25.0, 50.0]
    assert final.weights == {"primary": 0.0, "canary": 100.0}
    assert final.state["alias_moved"] is True
    assert final.state["previous_champion"] == 1
    assert final.state["retain_until_ms"] == clock.now + 14 * 86_400_000
    assert services.registry.get_model("churn").aliases["champion"] == 2
    history = services.registry.alias_history("churn", "champion")
    assert (history[-1].from_version, history[-1].to_version, history[-1].actor) == (1, 2, "policy")
    kinds = [d.kind for d in reversed(services.decisions.query(deployment="churn-live"))]
    assert kinds[0] == "deployment_created" and kinds[-1] == "promotion"
    assert kinds.count("rollout_step") == 2 and "rollback" not in kinds
    promotion = services.decisions.query(deployment="churn-live", kind="promotion")[0]
    assert "significant improvement: roc_auc" in " ".join(promotion.details["reasons"])


def test_a_restarted_controller_resumes_at_the_stored_step(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    service.create(POLICY, actor="ana")
    _serve_step(services, models, churn_rows[1].sample(1500, random_state=1), clock)
    assert service.evaluate("churn-live") is not None
    assert service.get("churn-live").weights["canary"] == 25.0
    # a new process: new services over the same database and log
    from keel.services import open_services

    restarted = open_services(services.settings)
    try:
        restarted.deployments.clock = clock
        restarted.deployments.decision_log.clock = clock
        _serve_step(restarted, models, churn_rows[1].sample(600, random_state=2), clock)
        assert restarted.deployments.evaluate("churn-live") is not None
        assert restarted.deployments.get("churn-live").weights["canary"] == 50.0
    finally:
        restarted.close()


def test_one_evaluator_at_a_time_across_threads(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    register_churn("good", "weak")
    service.create(POLICY, actor="ana")
    assert service.store.acquire_lease("deployment:churn-live", "other-process", 60_000, clock())
    assert evaluate_deployment(service, "churn-live") is None  # held elsewhere: skipped
    assert service.store.acquire_lease("deployment:churn-live", "other-process", 60_000, clock())
    clock.now += 61_000  # the other holder died: its lease expires
    assert evaluate_deployment(service, "churn-live") is not None

    barrier = threading.Barrier(8)
    wins: list[str] = []

    def contend(holder: str) -> None:
        barrier.wait()
        if service.store.acquire_lease("race", holder, 60_000, clock()):
            wins.append(holder)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
