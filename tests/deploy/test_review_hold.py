"""R-DEP-02's stakeholder review at 50% (policy ``review_at``) and R-DEP-15's burn-in in the
controller's decision records: real churn models, a real prediction log and labels, the
real CLI for the approval."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pandas as pd
import pytest
from tests.deploy.conftest import POLICY, START_MS, Clock, Models, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.deploy.service import DeploymentService
from keel.services import Services


def test_review_at_50_pauses_until_a_person_resumes(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    service.create({**POLICY, "review_at": [50]}, actor="ana")
    shares = []
    for i in range(6):
        current = service.get("churn-live")
        if current.status != "active":
            break
        shares.append(current.weights["canary"])
        rows = churn_rows[1].sample(1500 if i == 0 else 600, random_state=i)
        serve_step(services, models, rows, clock)
        service.evaluate("churn-live")
    held = service.get("churn-live")
    assert shares == [5.0, 25.0, 50.0]
    assert held.status == "paused" and held.weights["canary"] == 50.0
    assert held.state["rollouts"]["canary"]["awaiting_review"] is True
    pause = services.decisions.query(deployment="churn-live", kind="pause")[0]
    assert pause.actor == "policy" and "awaiting review at 50%" in pause.summary
    assert services.registry.get_model("churn").aliases["champion"] == 1
    # Paused: the controller leaves it alone, however good the numbers are.
    clock.now += 3_600_000
    assert service.evaluate("churn-live") is None
    assert service.get("churn-live").weights["canary"] == 50.0
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    result = CliRunner().invoke(cli, ["deploy", "resume", "churn-live", "--reason", "board ok"])
    assert result.exit_code == 0, result.output
    resumed = services.decisions.query(deployment="churn-live", kind="resume")[0]
    assert resumed.summary.endswith("board ok")
    after = service.evaluate("churn-live")
    assert after is not None and after.status == "promoted", after and after.status
    assert services.registry.get_model("churn").aliases["champion"] == 2
    assert after.state["rollouts"]["canary"]["awaiting_review"] is False


def test_burn_in_cut_and_rows_it_excluded_are_in_the_decision_record(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    service.create({**POLICY, "analysis": {"burn_in": "30s"}}, actor="ana")
    rows = churn_rows[1].sample(1200, random_state=7)
    serve_step(services, models, rows, clock)  # 1200 rows over [START+1, START+60000)
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    analysis = record.details["numbers"]["analysis"]
    assert analysis["burn_in_s"] == 30
    assert analysis["burn_in_cut"] == [{"from_ms": START_MS, "to_ms": START_MS + 30_000}]
    # serve_step (conftest.log_traffic) spaces the rows (60000 - 1) // 1200 = 49 ms apart
    # from START+1: those before START+30000 fall in the cut.
    step = (60_000 - 1) // 1200
    expected = sum(1 for i in range(1200) if START_MS + 1 + i * step < START_MS + 30_000)
    primary, canary = (record.details["numbers"][k] for k in ("primary", "candidate"))
    assert primary["burn_in_excluded"] + canary["burn_in_excluded"] == expected
    assert primary["n"] + canary["n"] == 1200  # the guardrails still see every row
    assert canary["metric"]["n"] == canary["n"] - canary["burn_in_excluded"]
    # The canary stepped up: its next step's burn-in starts at the step change.
    state = service.get("churn-live").state["rollouts"]["canary"]
    assert state["step"] == 1 and state["step_starts_ms"] == [START_MS]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"review_at": [30]}, "review_at[0]"),  # not a step
        ({"review_at": [50, 100]}, "review_at[1]"),  # 100 is the promotion, not a step hold
        ({"analysis": {"burn_in": "-1h"}}, "analysis.burn_in"),
        ({"analysis": {"attribution_window": "soon"}}, "analysis.attribution_window"),
    ],
)
def test_bad_review_and_window_values_are_422_naming_the_field(
    live_server: str, change: dict[str, object], field: str
) -> None:
    response = httpx.post(f"{live_server}/v1/deployments", json={**POLICY, **change})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert httpx.get(f"{live_server}/v1/deployments").json() == []  # nothing half-created
