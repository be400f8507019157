"""Deployment routes as the gateway builds them from stored deployments (no server here)."""

from __future__ import annotations

from typing import Any

import pytest

from keel.deploy.models import Deployment
from keel.deploy.routing import Router
from keel.errors import InvalidInput
from keel.serving.deployroutes import build_route, routing_key_of, versions_left


def stored(
    weights: dict[str, float],
    *,
    status: str = "active",
    version: int = 1,
    unit: str = "routing_key",
    phases: dict[str, str] | None = None,
    extra_arms: tuple[dict[str, Any], ...] = (),
) -> Deployment:
    """A deployment as the service stores it: canary v2 against primary v1 (+ extra arms)."""
    arms = [
        {"name": "primary", "role": "primary", "version": 1},
        {"name": "canary", "role": "canary", "version": 2},
        *extra_arms,
    ]
    versions = {a["name"]: a["version"] for a in arms}
    rollouts = {k: {"phase": v} for k, v in (phases or {"canary": "live"}).items()}
    return Deployment(
        name="churn-live",
        model="churn",
        strategy="canary",
        status=status,  # type: ignore[arg-type]
        policy={"name": "churn-live", "model": "churn", "unit": unit, "arms": arms},
        state={"weights": weights, "versions": versions, "rollouts": rollouts},
        version=version,
        created_at_ms=0,
        updated_at_ms=0,
    )


def test_route_lays_arms_out_as_the_policy_router_does() -> None:
    route = build_route(stored({"primary": 75.0, "canary": 25.0}))
    same = Router.build("churn-live", [("primary", 75.0), ("canary", 25.0)])
    keys = [f"user-{i}" for i in range(2_000)]
    assert [route.choose(k).name for k in keys] == [same.choose(k) for k in keys]
    assert {route.choose(k).version for k in keys} == {1, 2}


def test_route_without_share_leaves_the_arm_out_and_rollback_frees_its_version() -> None:
    before = build_route(stored({"primary": 95.0, "canary": 5.0}))
    after = build_route(stored({"primary": 100.0, "canary": 0.0}, status="rolled_back", version=2))
    assert {after.choose(f"k{i}").name for i in range(500)} == {"primary"}
    assert versions_left(before, after) == [2]
    assert versions_left(None, after) == ()


def test_shadow_arms_get_copies_until_the_deployment_finishes() -> None:
    shadow = {"name": "shadow", "role": "shadow", "version": 3}
    live = build_route(stored({"primary": 100.0, "canary": 0.0}, extra_arms=(shadow,)))
    assert [a.name for a in live.shadows] == ["shadow"]
    in_shadow_phase = build_route(
        stored({"primary": 100.0, "canary": 0.0}, phases={"canary": "shadow"})
    )
    assert [a.name for a in in_shadow_phase.shadows] == ["canary"]
    finished = build_route(
        stored({"primary": 100.0, "canary": 0.0}, status="rolled_back", extra_arms=(shadow,))
    )
    assert finished.shadows == ()


def test_unit_request_ignores_the_key() -> None:
    route = build_route(stored({"primary": 50.0, "canary": 50.0}, unit="request"))
    assert {route.choose("same-user").name for _ in range(200)} == {"primary", "canary"}


def test_arm_memo_prefixes_differ_between_arms() -> None:
    route = build_route(stored({"primary": 50.0, "canary": 50.0}))
    assert route.arms["primary"].memo_prefix != route.arms["canary"].memo_prefix


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"instances": [{"a": 1}]}', None),
        (b'{"instances": [{"a": 1}], "routing_key": "u-1"}', "u-1"),
        (b'{"instances": [{"a": 1}], "routing_key": 42}', "42"),
        (b'{"instances": [{"a": 1}], "routing_key": null}', None),
        (b'{"routing_key": "u", ', None),  # not JSON: the parser words the 400
    ],
)
def test_routing_key_of(body: bytes, key: str | None) -> None:
    assert routing_key_of(body) == key


@pytest.mark.parametrize("value", ['["u"]', "true", '""', '"' + "x" * 257 + '"', "1.5"])
def test_bad_routing_key_names_the_field(value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        routing_key_of(b'{"instances": [], "routing_key": %s}' % value.encode())
    assert caught.value.field == "routing_key"


def test_pick_remembers_sticky_arms_and_decodes_each_body_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from keel.serving import _json, armroutes

    decoded: list[bytes] = []
    loads = _json.loads

    def counting(body: bytes) -> Any:
        decoded.append(body)
        return loads(body)

    monkeypatch.setattr(armroutes._json, "loads", counting)
    route = build_route(stored({"primary": 60.0, "canary": 40.0}))
    bodies = [b'{"instances": [{"x": 1}], "routing_key": "user-%d"}' % i for i in range(300)]
    first = [route.pick(body) for body in bodies]
    again = [route.pick(bytes(bytearray(body))) for body in bodies]  # new objects, same bytes
    # the same arm as the router, the body decoded once and handed back for the parser
    assert [arm.name for arm, _ in first] == [route.choose(f"user-{i}").name for i in range(300)]
    assert [payload["routing_key"] for _, payload in first] == [f"user-{i}" for i in range(300)]
    assert [arm for arm, _ in again] == [arm for arm, _ in first]
    assert all(payload is None for _, payload in again)  # remembered: nothing decoded
    assert len(decoded) == 300
    # without a key (or with unit: request) the arm is drawn per request, never remembered
    unkeyed = b'{"instances": [{"x": 1}]}'
    assert {route.pick(unkeyed)[0].name for _ in range(300)} == {"primary", "canary"}
    per_request = build_route(stored({"primary": 50.0, "canary": 50.0}, unit="request"))
    keyed = b'{"instances": [{"x": 1}], "routing_key": "same-user"}'
    assert {per_request.pick(keyed)[0].name for _ in range(300)} == {"primary", "canary"}
    with pytest.raises(InvalidInput) as caught:
        route.pick(b'{"instances": [{"x": 1}], "routing_key": ""}')
    assert caught.value.field == "routing_key"


def test_confined_arms_are_experiments_short_of_all_live_traffic() -> None:
    shadow = {"name": "shadow", "role": "shadow", "version": 3}
    route = build_route(stored({"primary": 75.0, "canary": 25.0}, extra_arms=(shadow,)))
    assert not route.arms["primary"].confined
    assert route.arms["canary"].confined and route.shadows[0].confined
    assert route.primary is route.arms["primary"]
    last_step = build_route(stored({"primary": 0.0, "canary": 100.0}))
    assert not last_step.arms["canary"].confined and last_step.primary is None
