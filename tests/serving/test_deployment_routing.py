"""``POST /v1/deployments/{name}/predict`` on a real server: arms chosen before the cache on
every answer path, weights respected, sticky keys, shadows off the response path, rollback.

Real LightGBM models on the telco churn table (``small`` is v1, ``large`` v2: they give
different probabilities, so an answer from the wrong arm shows).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy.stats import chisquare
from serving_faults import Raising
from tests.serving.conftest import Churn, live_gateway, register, test_settings, unique

from keel.config import Settings
from keel.services import open_services
from keel.serving import predictions


def deploy(settings: Settings, churn: Churn, **policy: Any) -> tuple[str, str]:
    """Register small (v1) and large (v2) as a new model and create a deployment over them."""
    model = unique("dep")
    register(settings, model, churn.small, churn.train[churn.features][:5])
    register(settings, model, churn.large, churn.train[churn.features][:5])
    name = unique("live")
    arms = policy.pop("arms", None) or [
        {"version": 1, "role": "primary", "weight": 70},
        {"version": 2, "role": "challenger", "weight": 30},
    ]
    services = open_services(settings)
    try:
        body = {"name": name, "model": model, "strategy": "ab", "arms": arms, **policy}
        services.deployments.create(body, actor="test")
    finally:
        services.close()
    return model, name


def proba(churn: Churn, version: int, n: int, start: int = 0) -> list[float]:
    """The positive-class probability v1 (small) or v2 (large) gives ``churn.rows(n, start)``."""
    frame = churn.test[churn.features].iloc[start : start + n]
    model = churn.small if version == 1 else churn.large
    return [float(p) for p in model.predict_proba(frame)[:, 1]]


def test_weights_respected_and_each_answer_names_its_arm(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    _, name = deploy(settings, churn, unit="request")
    rows = churn.rows(1)
    arms: Counter[str] = Counter()
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        for _ in range(600):
            answer = http.post(f"/v1/deployments/{name}/predict", json={"instances": rows})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["deployment"] == name
            assert body["version"] == {"primary": 1, "challenger": 2}[body["arm"]]
            arms[body["arm"]] += 1
    # 70/30 per request: a chi-square test at 0.001 fails by chance once in a thousand runs
    assert chisquare([arms["primary"], arms["challenger"]], [420, 180]).pvalue > 0.001


def test_cached_answers_never_cross_arms(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    model, name = deploy(settings, churn, unit="request")
    rows = churn.rows(1, start=3)
    expected = {1: proba(churn, 1, 1, 3)[0], 2: proba(churn, 2, 1, 3)[0]}
    body = {"instances": rows, "probabilities": True}
    seen: Counter[tuple[str, bool]] = Counter()
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        # one repeated body: after the first answer per arm every request is a cache hit,
        # answered on the hit path, the front door or the route
        for _ in range(300):
            answer = http.post(f"/v1/deployments/{name}/predict", json=body).json()
            assert answer["probabilities"][0][1] == pytest.approx(expected[answer["version"]])
            assert answer["version"] == {"primary": 1, "challenger": 2}[answer["arm"]]
            seen[(answer["arm"], answer["cached"])] += 1
        model_route = http.post(f"/v1/models/{model}/1/predict", json=body).json()
    assert seen[("primary", True)] > 50 and seen[("challenger", True)] > 20
    assert "arm" not in model_route and "deployment" not in model_route


def test_sticky_keys_survive_a_restart(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    _, name = deploy(settings, churn)
    rows = churn.rows(1)
    keys = [f"customer-{i}" for i in range(80)]

    def arms_of() -> list[str]:
        with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
            return [
                http.post(
                    f"/v1/deployments/{name}/predict", json={"instances": rows, "routing_key": k}
                ).json()["arm"]
                for k in keys
            ]

    first = arms_of()
    assert set(first) == {"primary", "challenger"}
    assert arms_of() == first  # a new process-wide gateway: same arm per key


def test_prediction_log_has_deployment_arm_and_route(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    model, name = deploy(settings, churn, unit="request")
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        ids = {
            http.post(
                f"/v1/deployments/{name}/predict", json={"instances": churn.rows(2, start=i)}
            ).json()["request_id"]: None
            for i in range(20)
        }
    logged = predictions(model, settings=settings).to_pandas()
    mine = logged[logged["request_id"].isin(list(ids))]
    assert len(mine) == 40
    assert set(mine["deployment"]) == {name}
    for arm, version in (("primary", 1), ("challenger", 2)):
        rows = mine[mine["arm"] == arm]
        assert (rows["version"].astype(int) == version).all()
        assert set(rows["extra"]) == {f'{{"route": "deployments:/{name}/{arm}"}}'}


def test_bad_routing_key_and_unknown_deployment(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    _, name = deploy(settings, churn)
    rows = churn.rows(1)
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        bad = http.post(
            f"/v1/deployments/{name}/predict", json={"instances": rows, "routing_key": ["u"]}
        )
        missing = http.post("/v1/deployments/nobody/predict", json={"instances": rows})
        empty = http.post(f"/v1/deployments/{name}/predict", json={"instances": []})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "routing_key"
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "instances"


def test_shadow_that_raises_never_changes_a_live_answer(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    model = unique("dep")
    example = churn.train[churn.features][:5]
    register(settings, model, churn.small, example)
    register(settings, model, Raising(), example)
    name = unique("shadowed")
    services = open_services(settings)
    try:
        services.deployments.create(
            {
                "name": name,
                "model": model,
                "strategy": "shadow",
                "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "shadow"}],
            }
        )
    finally:
        services.close()
    rows = churn.rows(3, start=5)
    expected = proba(churn, 1, 3, 5)
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        for i in range(40):
            body = {"instances": rows, "probabilities": True, "routing_key": f"u{i}"}
            answer = http.post(f"/v1/deployments/{name}/predict", json=body)
            assert answer.status_code == 200, answer.text
            got = answer.json()
            assert (got["arm"], got["version"]) == ("primary", 1)
            assert np.allclose([p[1] for p in got["probabilities"]], expected)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            counts = live.gateway.shadows.describe()[name]["counts"]
            if counts.get("shadow:error", 0) >= 40:
                break
            time.sleep(0.05)
        assert counts == {"shadow:error": 40}
    logged = predictions(model, version=2, settings=settings).to_pandas()
    assert len(logged) == 40 * 3 and set(logged["arm"]) == {"shadow"}
    assert logged["extra"].str.contains('"error"').all()


def test_full_shadow_queue_drops_copies_and_counts_them(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    model = unique("dep")
    example = churn.train[churn.features][:5]
    register(settings, model, churn.small, example)
    register(settings, model, churn.large, example)
    name = unique("shadowed")
    services = open_services(settings)
    try:
        services.deployments.create(
            {
                "name": name,
                "model": model,
                "strategy": "shadow",
                "shadow": {"queue_size": 1},
                "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "shadow"}],
            }
        )
    finally:
        services.close()
    rows = churn.rows(1)

    def burst() -> None:
        with httpx.Client(base_url=live.url) as http:
            for i in range(60):
                body = {"instances": rows, "routing_key": f"u{i}"}
                assert http.post(f"/v1/deployments/{name}/predict", json=body).status_code == 200

    with live_gateway(settings) as live:
        threads = [threading.Thread(target=burst) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counts = live.gateway.shadows.describe()[name]["counts"]
        metrics = httpx.get(f"{live.url}/metrics").text
    assert counts.get("shadow:dropped", 0) > 0
    assert counts.get("shadow:dropped", 0) + counts.get("shadow:answered", 0) <= 360
    assert (
        f'keel_shadow_requests_total{{arm="shadow",deployment="{name}",outcome="dropped"}}'
        in metrics
    )


def test_rollback_under_load_answers_every_following_request_from_the_primary(
    tmp_path: Path, churn: Churn
) -> None:
    settings = test_settings(tmp_path)
    _, name = deploy(
        settings,
        churn,
        unit="request",
        arms=[
            {"version": 1, "role": "primary", "weight": 50},
            {"version": 2, "role": "challenger", "weight": 50},
        ],
    )
    rows = churn.rows(1)
    answers: list[tuple[float, str, int]] = []  # (sent at, arm, version)
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=live.url) as http:
            for _ in range(3_000):  # bounded: the loop ends even if stop is never set
                if stop.is_set():
                    return
                sent = time.monotonic()
                got = http.post(f"/v1/deployments/{name}/predict", json={"instances": rows})
                assert got.status_code == 200, got.text
                body = got.json()
                answers.append((sent, body["arm"], body["version"]))

    with live_gateway(settings) as live:
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        rolled = httpx.post(
            f"{live.url}/v1/deployments/{name}/rollback", json={"reason": "drill"}, timeout=10
        )
        done_at = time.monotonic()
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
    assert rolled.status_code == 200, rolled.text
    before = [a for a in answers if a[0] < done_at]
    after = [a for a in answers if a[0] >= done_at]
    assert {arm for _, arm, _ in before} == {"primary", "challenger"}
    assert len(after) > 20
    assert {(arm, version) for _, arm, version in after} == {("primary", 1)}


def test_rollback_drops_the_rolled_back_versions_cached_predictions(
    tmp_path: Path, churn: Churn
) -> None:
    settings = test_settings(tmp_path)
    model, name = deploy(settings, churn)
    rows = churn.rows(1, start=9)
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        keys = (f"k{i}" for i in range(1_000))
        for key in keys:  # the first key the challenger answers: its v2 row is now cached
            body = {"instances": rows, "routing_key": key}
            if http.post(f"/v1/deployments/{name}/predict", json=body).json()["arm"] != "primary":
                break
        version_2 = f"/v1/models/{model}/2/predict"
        assert http.post(version_2, json={"instances": rows}).json()["cached"] is True
        assert http.post(f"/v1/deployments/{name}/rollback", json={}).status_code == 200
        # R-SRV-06: the rolled-back version's entries are gone, v1's stay
        assert http.post(version_2, json={"instances": rows}).json()["cached"] is False
        again = http.post(f"/v1/deployments/{name}/predict", json=body).json()
        assert (again["arm"], again["version"]) == ("primary", 1)


def test_promotion_moves_every_key_to_the_candidate_at_once(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    _, name = deploy(settings, churn)
    rows = churn.rows(1)
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:

        def arms() -> set[tuple[str, int]]:
            answers = [
                http.post(
                    f"/v1/deployments/{name}/predict",
                    json={"instances": rows, "routing_key": f"u{i}"},
                ).json()
                for i in range(60)
            ]
            return {(a["arm"], a["version"]) for a in answers}

        assert arms() == {("primary", 1), ("challenger", 2)}
        promoted = http.post(f"/v1/deployments/{name}/promote", json={"reason": "better"})
        assert promoted.status_code == 200, promoted.text
        assert arms() == {("challenger", 2)}
        served = http.get("/v1/serving/status").json()["deployments"]["routes"][name]
    assert served["status"] == "promoted" and list(served["arms"]) == ["challenger"]
