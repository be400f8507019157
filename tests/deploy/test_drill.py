"""Rollback drills (R-DEP-09) against a real server: rollback, verification, record, restore."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.deploy.conftest import FEATURES, Models
from tests.deploy.test_controller import POLICY

from keel.deploy.drill import tier_of
from keel.services import Services

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _probe(churn_rows: tuple[pd.DataFrame, pd.DataFrame], n: int = 25) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = churn_rows[1][FEATURES].iloc[:n].to_dict(orient="records")
    return rows


def test_drill_rolls_back_verifies_records_and_restores(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    live_server: str,
) -> None:
    register_churn("good", "weak")
    services.deployments.create(POLICY, actor="ana")
    before = services.deployments.get("churn-live")
    with httpx.Client(base_url=live_server, timeout=60) as http:
        # some live traffic first: the replica reports, and logged requests to probe with
        for i in range(30):
            answer = http.post(
                "/v1/deployments/churn-live/predict",
                json={"instances": _probe(churn_rows, 40)[i : i + 1], "routing_key": f"u{i}"},
            )
            assert answer.status_code == 200, answer.text
        response = http.post("/v1/deployments/churn-live/drill", json={"timeout_s": 20})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["passed"] is True, report["checks"]
    assert report["tier"] == "immediate" and report["within_immediate"]
    checks = report["checks"]
    assert checks["route"]["arms"] == {"primary": 1}
    rows = checks["probe"]["rows"]  # the newest logged requests (up to 20) flushed so far
    assert 1 <= rows <= 20 and checks["probe"]["version"] == 1
    # the candidate's answers were cached before the rollback and none is left after it
    assert checks["cache"]["seeded"] == {"v2": rows} and checks["cache"]["remaining"] == {"v2": 0}
    assert checks["replicas"]["ok"] and checks["replicas"]["replicas"]
    after = services.deployments.get("churn-live")
    assert after.status == "active" and after.weights == before.weights
    assert after.state["rollouts"] == before.state["rollouts"]
    kinds = [d.kind for d in services.decisions.query(deployment="churn-live")]
    assert kinds[:2] == ["drill", "rollback"]
    rollback = services.decisions.query(deployment="churn-live", kind="rollback")[0]
    assert rollback.details["drill"] == {"restore": True, "probe_rows": rows}
    drill = services.decisions.query(deployment="churn-live", kind="drill")[0]
    assert drill.details["restored"] is True and "passed" in drill.summary
    # a drill's predictions were not bad: retraining keeps them
    assert services.deployments.bad_windows("churn") == []


def test_drill_without_restore_leaves_it_rolled_back_and_refuses_bad_input(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    live_server: str,
) -> None:
    register_churn("good", "weak")
    services.deployments.create(POLICY, actor="ana")
    url = "/v1/deployments/churn-live/drill"
    with httpx.Client(base_url=live_server, timeout=60) as http:
        for body, field in (
            ({"probe_rows": 5}, "instances"),  # nothing logged yet to probe with
            ({"instances": []}, "instances"),
            ({"probe_rows": 0}, "probe_rows"),
            ({"timeout_s": -1}, "timeout_s"),
            ({"restor": False}, "restor"),
        ):
            refused = http.post(url, json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert field in refused.text
        assert services.deployments.get("churn-live").version == 1  # nothing applied
        assert http.post("/v1/deployments/nope/drill", json={}).status_code == 404
        done = http.post(
            url, json={"instances": _probe(churn_rows), "restore": False, "timeout_s": 20}
        )
        assert done.status_code == 200, done.text
        assert done.json()["restored"] is False and done.json()["passed"] is True
        assert services.deployments.get("churn-live").status == "rolled_back"
        again = http.post(url, json={"instances": _probe(churn_rows)})
        assert again.status_code == 409
    assert tier_of(59.9) == "immediate" and tier_of(60) == "rapid"


def test_drill_without_a_gateway_or_replicas_fails_and_says_why(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    from keel.deploy.drill import _same, run_drill

    register_churn("good", "weak")
    services.deployments.create(POLICY, actor="ana")
    report = run_drill(
        services.deployments, None, "churn-live", instances=_probe(churn_rows), timeout_s=0.2
    )
    assert report["passed"] is False and report["verified_in_gateway"] is False
    assert report["checks"]["replicas"] == {
        "ok": False, "replicas": [], "waited_s": pytest.approx(0.2, abs=0.5),
        "reason": "no replica reported",
    }  # fmt: skip
    drill = services.decisions.query(deployment="churn-live", kind="drill")[0]
    assert "FAILED" in drill.summary and drill.details["restored"] is True
    assert services.deployments.get("churn-live").status == "active"
    # answers compared as numbers to 1e-9 relative, anything else as text
    assert _same([1, 0.5, "yes"], [1.0, 0.5 + 1e-12, "yes"]) == []
    assert _same([1, 0.5, "yes"], [0, 0.5001, "no"]) == [0, 1, 2]
