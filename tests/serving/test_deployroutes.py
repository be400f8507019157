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
