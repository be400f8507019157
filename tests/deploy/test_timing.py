"""R-TRN-21 on the rollout side: a deployment policy's ``timing`` holds a canary's step (and a
rollout's start) in a peak hour of week, recorded once per held hour, and lets it move in
the next quiet hour; a rollback is never held; bad timing values are a 422 naming the field.

Traffic and peak hour: :mod:`tests.deploy._timing_setup` (the ``peak`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from tests.deploy._timing_setup import HOUR_MS, PEAK_HOUR, PEAK_SLOT, TIMED, Peak, timing_line
from tests.deploy.conftest import POLICY, Models, serve_step

from keel.services import Services


def test_a_passing_canary_is_held_in_the_peak_hour_once_and_advances_after(peak: Peak) -> None:
    # 16:59, a quiet hour: the canary starts at once
    models = peak.create("weak", "good", PEAK_HOUR - 60_000)
    created = peak.service.get("churn-live")
    assert created.weights == {"primary": 95.0, "canary": 5.0}
    assert created.state["timing"]["allowed"] and not peak.holds()
    peak.clock.now = PEAK_HOUR + 30_000
    held = peak.serve(models, 1500, 1)
    assert held is not None and held.status == "active"
    assert held.weights == {"primary": 95.0, "canary": 5.0}
    evaluation = peak.services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    assert evaluation.details["action"] == "hold"
    assert "step gates met" in evaluation.details["reasons"]  # it would have advanced
    assert any(r.startswith("advance held: peak traffic") for r in evaluation.details["reasons"])
    [record] = peak.holds()
    assert record.summary.startswith("canary at 5% held: peak traffic: 30.0 predictions/h")
    numbers = record.details["numbers"]["peak"]
    assert numbers["hour_of_week"] == PEAK_SLOT and numbers["current_mean"] == 30.0
    assert numbers["threshold"] == pytest.approx(float(np.percentile(peak.expected, 80)))
    assert numbers["next_quiet_ms"] == PEAK_HOUR + HOUR_MS
    assert held.state["timing"]["held"] == "step"
    assert held.state["timing"]["retry_at_ms"] == PEAK_HOUR + HOUR_MS
    # later in the same peak hour: held again, no second hold record
    peak.clock.now = PEAK_HOUR + 30 * 60_000
    assert peak.serve(models, 600, 2).weights["canary"] == 5.0  # type: ignore[union-attr]
    assert len(peak.holds()) == 1
    # the next hour is quiet: the held step goes ahead
    peak.clock.now = PEAK_HOUR + HOUR_MS + 1_000
    moved = peak.serve(models, 600, 3)
    assert moved is not None and moved.weights == {"primary": 75.0, "canary": 25.0}
    assert moved.state["timing"]["allowed"] and moved.state["timing"]["held"] is None
    step = peak.services.decisions.query(deployment="churn-live", kind="rollout_step")[0]
    assert "step gates met" in step.summary and len(peak.holds()) == 1


def test_a_worse_canary_is_rolled_back_in_the_peak_hour(peak: Peak) -> None:
    models = peak.create("good", "weak", PEAK_HOUR - 60_000)
    peak.clock.now = PEAK_HOUR + 30_000
    slow = {"primary": 5.0, "canary": 15.0}
    serve_step(peak.services, models, peak.production.iloc[:1200], peak.clock, latency_ms=slow)
    after = peak.service.evaluate("churn-live")
    assert after is not None and after.status == "rolled_back"
    assert after.weights == {"primary": 100.0, "canary": 0.0}
    rollback = peak.services.decisions.query(deployment="churn-live", kind="rollback")[0]
    assert "guardrail breached: p99_latency" in rollback.summary
    assert not peak.holds()
    settled = after.state["timing"]["settled"]  # no pending look after the rollback
    assert settled == {"outcome": "rolled_back", "at_ms": peak.clock.now, "actor": "policy"}


def test_start_held_at_peak_shown_over_rest_and_cli_then_released(
    live_server: str, peak: Peak
) -> None:
    peak.register("weak", "good")
    peak.clock.now = PEAK_HOUR + 10 * 60_000
    created = httpx.post(f"{live_server}/v1/deployments", json=TIMED)
    assert created.status_code == 201, created.text
    state = created.json()["state"]
    assert state["weights"] == {"primary": 100.0, "canary": 0.0}
    assert state["timing"]["held"] == "start" and not state["timing"]["allowed"]
    shown = httpx.get(f"{live_server}/v1/deployments/churn-live").json()["state"]["timing"]
    assert shown["numbers"]["peak"]["current_mean"] == 30.0
    line = timing_line(live_server)
    assert "start held since 2030-03-17 17:10 UTC" in line
    assert "next allowed 2030-03-17 18:00 UTC" in line
    peak.clock.now = PEAK_HOUR + 40 * 60_000
    assert peak.service.evaluate("churn-live").weights["canary"] == 0.0  # type: ignore[union-attr]
    [record] = peak.holds()  # from the creation; the hour's second look adds none
    assert record.summary.startswith("rollout start held: peak traffic")
    peak.clock.now = PEAK_HOUR + HOUR_MS + 5_000
    started = peak.service.evaluate("churn-live")
    assert started is not None and started.weights == {"primary": 95.0, "canary": 5.0}
    rollout = started.state["rollouts"]["canary"]
    assert rollout["started_ms"] == rollout["phase_started_ms"] == peak.clock.now
    step = peak.services.decisions.query(deployment="churn-live", kind="rollout_step")[0]
    assert step.summary.startswith("rollout started, held since 2030-03-17 17:10 UTC")
    assert "allowed at 2030-03-17 18:00 UTC" in timing_line(live_server)


@pytest.mark.parametrize(
    ("timing", "field"),
    [
        ({"allowed_hours": "25-3"}, "timing.allowed_hours"),
        ({"allowed_days": ["sat", "funday"]}, "timing.allowed_days"),
        ({"avoid_peak": {"percentile": 120}}, "timing.avoid_peak.percentile"),
        ({"avoid_peak": {"weeks": 0}}, "timing.avoid_peak.weeks"),
        ({"avoid_peak": {"often": 3}}, "timing.avoid_peak.often"),
        ({"quiet": True}, "timing.quiet"),
        ("nights", "timing"),
    ],
)
def test_bad_timing_is_a_422_naming_the_field(
    live_server: str, services: Services, timing: Any, field: str
) -> None:
    response = httpx.post(f"{live_server}/v1/deployments", json={**POLICY, "timing": timing})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert service_is_empty(services)


def service_is_empty(services: Services) -> bool:
    return services.deployments.list() == []


def test_a_retrain_rollout_inherits_the_trigger_timing() -> None:
    from keel.automation.retrain.spec import rollout_policy
    from keel.automation.triggers import parse_trigger
    from keel.automation.triggers.timing import retrain_section
    from keel.deploy.policy import parse_policy

    def trigger(rollout: dict[str, Any]) -> Any:
        return parse_trigger(
            {
                "name": "nightly",
                "model": "churn",
                "any": [{"metric": "manual"}],
                "timing": {"allowed_hours": "22-06", "avoid_peak": True},
                "retrain": {"rollout": rollout},
            }
        )

    canary = {"strategy": "canary", "steps": [10, 100]}
    section = retrain_section(trigger(canary))
    policy = parse_policy(rollout_policy(section["rollout"], "churn", "churn-v2"))
    assert policy.timing is not None and policy.timing.allowed_hours == "22-06"
    assert policy.timing.peak is not None and policy.timing.peak.percentile == 80
    own = retrain_section(trigger({**canary, "timing": {"allowed_days": ["sat"]}}))
    assert own["rollout"]["timing"] == {"allowed_days": ["sat"]}  # its own wins
    off = retrain_section(trigger({**canary, "timing": None}))  # explicitly none
    assert parse_policy(rollout_policy(off["rollout"], "churn", "churn-v2")).timing is None


def test_a_fired_trigger_queues_its_rollout_with_the_trigger_timing(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    import time

    from tests.automation.triggerdata import recording_retrain_kind

    register_churn("weak", "good")
    every_day = {"allowed_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}
    spec = {
        "name": "hand",
        "model": "churn",
        "any": [{"metric": "manual"}],
        "timing": every_day,
        "retrain": {"train": "pkg.mod:train", "rollout": {"strategy": "canary"}},
    }
    with recording_retrain_kind():
        services.triggers.apply(spec)
        fired = services.triggers.evaluate("hand", int(time.time() * 1000), manual=True)
        assert fired.fired, fired.reason
        (job,) = services.jobs.list_jobs(kind="retrain.run")
    assert job.args["retrain"]["rollout"] == {"strategy": "canary", "timing": every_day}
    assert services.triggers.get("hand").retrain["rollout"] == {"strategy": "canary"}
