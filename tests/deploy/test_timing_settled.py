"""R-TRN-21: a finished deployment's ``state.timing`` is settled, never a pending hold.

Promotion (the controller's after a held hour, or a person's while held), rollback and
completion record how and when the deployment finished beside the last timing check,
with no hold and no retry time left; REST, SDK and ``keel deploy show`` say the same.
Traffic and peak hour as in :mod:`tests.deploy.test_timing`.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pandas as pd
import pytest
from tests.deploy.conftest import Clock, Models, serve_step
from tests.deploy.test_timing import HOUR_MS, PEAK_HOUR, TIMED, log_background_week
from typer.testing import CliRunner

from keel import Client
from keel.cli.main import app as cli
from keel.deploy.service import DeploymentService
from keel.services import Services


def timing_line(live_server: str) -> str:
    """``keel deploy show``'s timing line, unfolded (the console wraps at 80 columns)."""
    shown = CliRunner().invoke(cli, ["deploy", "show", "churn-live", "--server", live_server])
    assert shown.exit_code == 0, shown.output
    return " ".join(shown.output.split("timing:", 1)[1].split())


def test_a_promotion_held_at_peak_then_let_through_leaves_the_timing_settled(
    live_server: str,
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    log_background_week(services, churn_rows[1])
    clock.now = PEAK_HOUR - 10 * 60_000  # a quiet hour: 5% -> 25% -> 50%
    service.create(TIMED, actor="ana")
    production = churn_rows[1]
    for i, n in enumerate((1500, 600)):
        serve_step(services, models, production.sample(n, random_state=i), clock)
        service.evaluate("churn-live")
    clock.now = PEAK_HOUR + 30_000  # the promotion is held in the peak hour
    serve_step(services, models, production.sample(600, random_state=5), clock)
    held = service.evaluate("churn-live")
    assert held is not None and held.weights["canary"] == 50.0
    assert held.state["timing"]["held"] == "step"
    clock.now = PEAK_HOUR + HOUR_MS + 1_000  # the next hour is quiet: promoted
    serve_step(services, models, production.sample(600, random_state=3), clock)
    done = service.evaluate("churn-live")
    assert done is not None and done.status == "promoted"
    timing = done.state["timing"]
    assert timing["settled"] == {"outcome": "promoted", "at_ms": clock.now, "actor": "policy"}
    assert (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)
    assert timing["allowed"] and timing["checked_ms"] == clock.now  # the check let it through
    rest = httpx.get(f"{live_server}/v1/deployments/churn-live").json()["state"]["timing"]
    sdk = Client(live_server, settings=services.settings).get_deployment("churn-live")
    assert rest == sdk.state["timing"] == timing
    line = timing_line(live_server)
    assert "promoted at 2030-03-17 18:01 UTC by policy" in line
    assert "last check allowed at 2030-03-17 18:01 UTC" in line and "held" not in line


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_person_acting_on_a_held_start_settles_the_timing(
    live_server: str,
    action: str,
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    register_churn("weak", "good")
    log_background_week(services, churn_rows[1])
    clock.now = PEAK_HOUR + 10 * 60_000
    created = service.create(TIMED, actor="ana")
    assert created.state["timing"]["held"] == "start"
    clock.now += 5 * 60_000
    done = getattr(service, action)("churn-live", actor="bo")
    outcome = {"promote": "promoted", "rollback": "rolled_back"}[action]
    assert done.status == outcome
    timing = done.state["timing"]
    assert timing["settled"] == {"outcome": outcome, "at_ms": clock.now, "actor": "bo"}
    assert (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)
    # the last check stays what it was: the person acted at peak, not the timing
    assert timing["checked_ms"] == created.state["timing"]["checked_ms"]
    assert not timing["allowed"]
    line = timing_line(live_server)
    assert f"{outcome.replace('_', ' ')} at 2030-03-17 17:15 UTC by bo" in line
    assert "not allowed (peak traffic" in line and "held since" not in line
    assert service.evaluate("churn-live") is None  # finished: the controller leaves it
