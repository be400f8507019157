"""A promotion refused by the champion alias's compare-and-set leaves nothing half-applied
(issue #16), on SQLite and PostgreSQL with Redis: no ``promotion`` record, no stored
``promoted`` state that another reader could see in between, no announcement of one; a
``promotion_refused`` record names the reason. A live race of a promotion against an alias
move always ends with the alias and the deployment agreeing."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from tests.conftest import IN_CI
from tests.deploy.conftest import POLICY, Clock, Models

from keel.config import Settings
from keel.deploy.service import DeploymentService
from keel.errors import Conflict
from keel.services import Services
from keel.serving.events import CHANNEL, Invalidation

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BLUE_GREEN: dict[str, Any] = {
    "name": "churn-bg",
    "model": "churn",
    "strategy": "blue_green",
    "blue_green": {"switch_after": "1m", "verify": "5m"},
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "challenger"}],
}


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis; skips locally when there is none, fails under CI=true."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {exc}")
    return REDIS_URL


@pytest.fixture
def settings(settings: Settings, redis_url: str) -> Settings:
    """The usual settings (SQLite or PostgreSQL) with Redis: every change is announced."""
    return settings.model_copy(update={"redis_url": redis_url})


@contextmanager
def statuses_at_alias_cas(services: Services, name: str) -> Iterator[list[str]]:
    """The deployment's stored status as a second engine reads it each time this thread
    reads the champion alias (the compare-and-set) — what any other replica could see."""
    engine = services.store.engine
    other = create_engine(engine.url.render_as_string(hide_password=False))
    me, seen = threading.get_ident(), []

    def peek(*args: Any) -> None:
        if threading.get_ident() == me and "model_aliases" in args[2]:
            with other.connect() as conn:
                query = text("SELECT status FROM deployments WHERE name = :n")
                seen.append(conn.execute(query, {"n": name}).scalar_one())

    event.listen(engine, "before_cursor_execute", peek)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", peek)
        other.dispose()


@contextmanager
def announcements(redis_url: str, name: str) -> Iterator[list[Invalidation]]:
    """The Redis events naming deployment ``name`` published inside the block (filled at
    its end; other tests share this Redis, so only ``name``'s events count)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(CHANNEL)
    assert pubsub.get_message(timeout=2) is not None  # the subscription is in place
    heard: list[Invalidation] = []
    try:
        yield heard
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                found = Invalidation.from_json(message["data"])
                if found.deployment == name:
                    heard.append(found)
    finally:
        pubsub.close()
        client.close()


def test_a_refused_promotion_writes_no_promoted_record_and_never_shows_promoted(
    services: Services, register_churn: Callable[[str, str], Models], redis_url: str
) -> None:
    register_churn("weak", "good")
    service = services.deployments
    name = f"promo-{uuid.uuid4().hex[:8]}"
    service.create({**POLICY, "name": name})
    services.registry.delete_alias("churn", "champion", actor="someone")  # moved meanwhile
    before = service.get(name)
    with announcements(redis_url, name) as heard, statuses_at_alias_cas(services, name) as seen:
        with pytest.raises(Conflict) as caught:
            service.promote(name, "ana")
    assert caught.value.field == "alias" and caught.value.status == 409
    assert seen and set(seen) == {"active"}  # never "promoted", not even in between
    after = service.get(name)
    assert (after.version, after.status) == (before.version, "active")
    assert after.weights == {"primary": 95.0, "canary": 5.0} and after.state == before.state
    records = service.decisions(name)
    assert [d.kind for d in records] == ["promotion_refused", "deployment_created"]
    refused = records[0]
    assert refused.actor == "ana" and "points at None, not the expected 1" in refused.summary
    assert refused.details["arm"] == "canary" and refused.details["version"] == 2
    assert heard == []
    assert "champion" not in services.registry.get_model("churn").aliases
    # the alias put back: the same promotion goes through, and is announced
    services.registry.set_alias("churn", "champion", 1, actor="someone")
    with announcements(redis_url, name) as heard:
        assert service.promote(name, "ana").status == "promoted"
    assert [e.kind for e in heard] == ["deployment"]
    assert services.registry.get_model("churn").aliases["champion"] == 2
    kinds = [d.kind for d in service.decisions(name)]
    assert kinds == ["promotion", "promotion_refused", "deployment_created"]


def test_the_controllers_promotion_after_a_blue_green_switch_is_refused_whole(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    register_churn("weak", "good")
    service.create(BLUE_GREEN, actor="ana")
    clock.now += 2 * 60_000
    switched = service.evaluate("churn-bg")  # the switch: green takes all traffic
    assert switched is not None and switched.status == "active"
    assert switched.weights == {"primary": 0.0, "challenger": 100.0}
    services.registry.delete_alias("churn", "champion", actor="someone")  # moved meanwhile
    clock.now += 6 * 60_000  # verified: the controller promotes now
    with statuses_at_alias_cas(services, "churn-bg") as seen:
        assert service.evaluate("churn-bg") is None
    assert seen and set(seen) == {"active"}
    after = service.get("churn-bg")  # paused for a person (test_promotion_refused.py)
    assert (after.version, after.status, after.weights) == (
        switched.version + 1,
        "paused",
        switched.weights,
    )
    records = service.decisions("churn-bg")
    assert "promotion" not in [d.kind for d in records]
    assert [(d.kind, d.actor) for d in records[:2]] == [
        ("pause", "policy"),
        ("promotion_refused", "policy"),
    ]
    assert "not the expected 1" in records[1].summary and records[1].details["reasons"]
    # the champion back where the rollout began and resumed: the next tick promotes
    services.registry.set_alias("churn", "champion", 1, actor="someone")
    service.resume("churn-bg", actor="ana")
    clock.now += 60_000
    done = service.evaluate("churn-bg")
    assert done is not None and done.status == "promoted" and done.state["alias_moved"] is True
    assert services.registry.get_model("churn").aliases["champion"] == 2
    assert [d.kind for d in service.decisions("churn-bg", limit=2)] == [
        "promotion",
        "evaluation",
    ]


def test_a_promotion_cut_short_by_an_older_version_is_finished_by_the_next_tick(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    """keel before one-transaction promotions stored the promoted state, then moved the
    alias: a process killed in between left ``alias_moved: false``. The controller finishes
    such a row: the alias moves and the flag is set together."""
    service, clock = clocked
    register_churn("weak", "good")
    created = service.create(POLICY, actor="ana")
    rollouts = {**created.state["rollouts"]}
    rollouts["canary"] = {**rollouts["canary"], "phase": "done", "step": 3}
    state = {
        **created.state,
        "weights": {"primary": 0.0, "canary": 100.0},
        "rollouts": rollouts,
        "alias_moved": False,
    }
    service.store.update_deployment(
        "churn-live", created.version, status="promoted", state=state, at_ms=clock.now
    )
    finished = service.evaluate("churn-live")
    assert finished is not None and finished.state["alias_moved"] is True
    assert services.registry.get_model("churn").aliases["champion"] == 2
    assert service.evaluate("churn-live") is None  # nothing left to do


def test_a_promotion_racing_an_alias_move_always_agrees_with_the_alias(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("weak", "good")
    register_churn("weak", "good")  # v3 and v4: v3 is where the other writer moves champion
    service, registry = services.deployments, services.registry
    wins = {"promotion": 0, "alias move": 0}
    for round_ in range(20):
        name = f"race-{round_}"
        registry.set_alias("churn", "champion", 1, actor="reset")
        service.create({**POLICY, "name": name})
        # the move starts 0-20 ms later, so that either writer commits first now and then
        outcome = _promote_while_moving(
            service, name, delay_s=(0.0, 0.002, 0.005, 0.01, 0.02)[round_ % 5]
        )
        refused = [k for k, v in outcome.items() if isinstance(v, Conflict)]
        assert len(outcome) == 2 and len(refused) == 1, outcome
        champion = registry.get_model("churn").aliases["champion"]
        final = service.get(name)
        kinds = [d.kind for d in service.decisions(name)]
        if refused == ["move"]:
            wins["promotion"] += 1
            assert champion == 2 and final.status == "promoted", (round_, outcome)
            assert final.weights == {"primary": 0.0, "canary": 100.0}
            assert kinds == ["promotion", "deployment_created"], round_
        else:
            wins["alias move"] += 1
            assert outcome["promote"].field == "alias", outcome
            assert champion == 3 and final.status == "active" and final.version == 1, round_
            assert final.weights == {"primary": 95.0, "canary": 5.0}
            assert kinds == ["promotion_refused", "deployment_created"], round_
            service.rollback(name, "next round")  # the model's next deployment may start
    moves = [e for e in registry.alias_history("churn", "champion") if e.actor == "mover"]
    assert len(moves) == wins["alias move"], wins
    promotions = services.decisions.query(model="churn", kind="promotion", limit=100)
    assert len(promotions) == wins["promotion"], wins


def _promote_while_moving(service: DeploymentService, name: str, delay_s: float) -> dict[str, Any]:
    """Promote ``name`` in one thread while another moves champion v1 -> v3 by
    compare-and-set ``delay_s`` after both are released; each one's result or Conflict."""
    barrier = threading.Barrier(2)
    outcome: dict[str, Any] = {}
    actions: dict[str, Callable[[], Any]] = {
        "promote": lambda: service.promote(name, "ana"),
        "move": lambda: service.registry.set_alias(
            "churn", "champion", 3, actor="mover", expected=1
        ),
    }

    def run(key: str) -> None:
        barrier.wait()
        if key == "move":
            time.sleep(delay_s)
        try:
            outcome[key] = actions[key]()
        except Conflict as exc:
            outcome[key] = exc

    threads = [threading.Thread(target=run, args=(key,)) for key in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcome
