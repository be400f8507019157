"""The controller's promotion refused by the champion alias's compare-and-set (someone moved
the alias during the rollout) pauses the deployment for a person instead of retrying on every
tick: one ``promotion_refused`` and one ``pause`` record (actor ``policy``), written together;
later ticks write nothing. The pause reason names the alias's version and both ways on: a
hand promote over that version (compared against the version the pause named, so a champion
moved again since is refused too) or a resume (the controller tries once more). SQLite and
PostgreSQL (the ``settings`` fixture)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import event
from tests.deploy.conftest import POLICY, Clock, Models, serve_step

from keel.deploy.models import Deployment
from keel.deploy.service import DeploymentService
from keel.errors import Conflict
from keel.services import Services

MIN = 60_000
BLUE_GREEN: dict[str, Any] = {
    "name": "churn-bg",
    "model": "churn",
    "strategy": "blue_green",
    "blue_green": {"switch_after": "1m", "verify": "5m"},
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "challenger"}],
}


def _kinds(service: DeploymentService, name: str) -> list[str]:
    return [d.kind for d in service.decisions(name)]


def _walk_to_50(
    services: Services, models: Models, production: pd.DataFrame, clock: Clock
) -> Deployment:
    """The usual better canary walked on the test clock up to its 50 % step."""
    service = services.deployments
    for seed in (1, 2):
        rows = production.sample(1500 if seed == 1 else 600, random_state=seed)
        serve_step(services, models, rows, clock)
        service.evaluate("churn-live")
    current = service.get("churn-live")
    assert current.weights == {"primary": 50.0, "canary": 50.0}, current.weights
    return current


def test_a_refused_controller_promotion_pauses_once_and_resume_tries_once_more(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    register_churn("weak", "good")  # v3: where someone else moves champion
    service.create(POLICY, actor="ana")
    _walk_to_50(services, models, churn_rows[1], clock)
    services.registry.set_alias("churn", "champion", 3, actor="carla")  # meanwhile
    serve_step(services, models, churn_rows[1].sample(600, random_state=3), clock)
    assert service.evaluate("churn-live") is None  # the promotion at 100 % is refused
    paused = service.get("churn-live")
    assert paused.status == "paused" and paused.weights == {"primary": 50.0, "canary": 50.0}
    pause, refused = service.decisions("churn-live", limit=2)
    assert (refused.kind, refused.actor, refused.details["version"]) == (
        "promotion_refused",
        "policy",
        2,
    )
    assert (pause.kind, pause.actor, pause.at_ms) == ("pause", "policy", refused.at_ms)
    reason = pause.details["reason"]
    assert "champion of churn is v3, not v1" in reason, reason
    assert "keel deploy promote churn-live" in reason and "keel deploy resume churn-live" in reason
    assert paused.state["promotion_refused"]["champion"] == 3
    written = len(service.decisions("churn-live"))
    for _ in range(3):  # later ticks leave it alone: nothing written, nothing moved
        clock.now += MIN
        assert service.evaluate("churn-live") is None
    assert len(service.decisions("churn-live")) == written
    assert service.get("churn-live").version == paused.version
    assert services.registry.get_model("churn").aliases["champion"] == 3
    # resume: the controller tries once more (against v1, the champion at rollout start)
    resumed = service.resume("churn-live", actor="bo")
    assert "promotion_refused" not in resumed.state
    clock.now += MIN
    assert service.evaluate("churn-live") is None
    assert service.get("churn-live").status == "paused"
    assert _kinds(service, "churn-live")[:4] == ["pause", "promotion_refused", "resume", "pause"]
    assert _kinds(service, "churn-live").count("promotion_refused") == 2
    clock.now += MIN
    assert service.evaluate("churn-live") is None
    assert len(service.decisions("churn-live")) == written + 3
    # a person promotes over v3, the version the pause named
    done = service.promote("churn-live", actor="ana")
    assert done.status == "promoted" and done.state["previous_champion"] == 3
    assert "promotion_refused" not in done.state
    assert services.registry.get_model("churn").aliases["champion"] == 2
    last = services.registry.alias_history("churn", "champion")[-1]
    assert (last.from_version, last.to_version, last.actor) == (3, 2, "ana")


def test_a_hand_promote_compares_against_the_champion_the_pause_named(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    register_churn("weak", "good")
    register_churn("weak", "good")  # v3, v4
    service.create(BLUE_GREEN, actor="ana")
    clock.now += 2 * MIN
    assert service.evaluate("churn-bg") is not None  # switched to green
    services.registry.set_alias("churn", "champion", 3, actor="carla")
    clock.now += 6 * MIN  # verified: the controller promotes now, and is refused
    assert service.evaluate("churn-bg") is None
    assert service.get("churn-bg").state["promotion_refused"]["champion"] == 3
    services.registry.set_alias("churn", "champion", 4, actor="dan")  # moved again
    before = service.get("churn-bg")
    with pytest.raises(Conflict) as caught:
        service.promote("churn-bg", actor="ana")
    assert caught.value.field == "alias" and "points at 4, not the expected 3" in (
        caught.value.message
    )
    after = service.get("churn-bg")
    assert (after.status, after.version) == ("paused", before.version)
    refused = service.decisions("churn-bg", limit=1)[0]
    assert (refused.kind, refused.actor, refused.details["expected_champion"]) == (
        "promotion_refused",
        "ana",
        3,
    )
    assert services.registry.get_model("churn").aliases["champion"] == 4
    # resumed, the controller is refused again and its pause names v4: promoted over it
    service.resume("churn-bg", actor="ana")
    clock.now += MIN
    assert service.evaluate("churn-bg") is None
    again = service.get("churn-bg")
    assert again.status == "paused" and again.state["promotion_refused"]["champion"] == 4
    assert service.promote("churn-bg", actor="ana").state["previous_champion"] == 4
    assert services.registry.get_model("churn").aliases["champion"] == 2


def test_an_active_deployments_hand_promote_still_compares_with_the_rollout_start(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    """Only the pause of a refused promotion changes what a person's promote expects."""
    service, _ = clocked
    register_churn("weak", "good")
    register_churn("weak", "good")
    service.create(BLUE_GREEN, actor="ana")
    services.registry.set_alias("churn", "champion", 3, actor="carla")
    with pytest.raises(Conflict) as caught:
        service.promote("churn-bg", actor="ana")
    assert "not the expected 1" in caught.value.message
    assert service.get("churn-bg").status == "active"
    assert _kinds(service, "churn-bg") == ["promotion_refused", "deployment_created"]


def test_a_person_acting_between_the_refusal_and_its_pause_wins_and_nothing_is_half_written(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    """The refusal record and the controller's pause are one compare-and-set: a person's
    pause committed after the refused promotion rolled back and before the controller's
    pause leaves the person's pause alone — no ``promotion_refused`` without its pause."""
    service, clock = clocked
    register_churn("weak", "good")
    register_churn("weak", "good")
    service.create(BLUE_GREEN, actor="ana")
    clock.now += 2 * MIN
    assert service.evaluate("churn-bg") is not None  # switched to green
    services.registry.set_alias("churn", "champion", 3, actor="carla")
    clock.now += 6 * MIN
    engine, me = services.store.engine, threading.get_ident()
    armed, acted = [False], []

    def saw_alias(*args: Any) -> None:  # the promotion's alias compare-and-set is running
        if threading.get_ident() == me and "model_aliases" in args[2]:
            armed[0] = True

    def returned(*_: Any) -> None:  # its connection is back in the pool: rolled back
        if threading.get_ident() == me and armed[0]:
            armed[0] = False  # once: the pause's own connections come back here too
            acted.append(service.pause("churn-bg", actor="bo", reason="incident"))

    event.listen(engine, "before_cursor_execute", saw_alias)
    event.listen(engine.pool, "checkin", returned)
    try:
        assert service.evaluate("churn-bg") is None
    finally:
        event.remove(engine, "before_cursor_execute", saw_alias)
        event.remove(engine.pool, "checkin", returned)
    assert acted, "the person's pause did not run between the refusal and the pause"
    after = service.get("churn-bg")
    assert (after.status, after.version) == ("paused", acted[0].version)
    assert "promotion_refused" not in after.state
    assert [(d.kind, d.actor) for d in service.decisions("churn-bg", limit=2)] == [
        ("pause", "bo"),
        ("rollout_step", "policy"),
    ]
