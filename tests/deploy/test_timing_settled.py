"""R-TRN-21: a finished deployment's ``state.timing`` is settled, never a pending hold.

Promotion (the controller's after a held hour, or a person's while held), rollback and
completion record how and when the deployment finished beside the last timing check,
with no hold and no retry time left; REST, SDK and ``keel deploy show`` say the same.
Traffic and peak hour: :mod:`tests.deploy._timing_setup` (the ``peak`` fixture).
"""

from __future__ import annotations

import httpx
import pytest
from tests.deploy._timing_setup import HOUR_MS, PEAK_HOUR, Peak, timing_line

from keel import Client


def test_a_promotion_held_at_peak_then_let_through_leaves_the_timing_settled(
    live_server: str, peak: Peak
) -> None:
    models = peak.create("weak", "good", PEAK_HOUR - 10 * 60_000)  # quiet: 5% -> 25% -> 50%
    for i, n in enumerate((1500, 600)):
        peak.serve(models, n, i)
    peak.clock.now = PEAK_HOUR + 30_000  # the promotion is held in the peak hour
    held = peak.serve(models, 600, 5)
    assert held is not None and held.weights["canary"] == 50.0
    assert held.state["timing"]["held"] == "step"
    peak.clock.now = PEAK_HOUR + HOUR_MS + 1_000  # the next hour is quiet: promoted
    done = peak.serve(models, 600, 3)
    assert done is not None and done.status == "promoted"
    timing = done.state["timing"]
    now = peak.clock.now
    assert timing["settled"] == {"outcome": "promoted", "at_ms": now, "actor": "policy"}
    assert (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)
    assert timing["allowed"] and timing["checked_ms"] == now  # the check let it through
    rest = httpx.get(f"{live_server}/v1/deployments/churn-live").json()["state"]["timing"]
    sdk = Client(live_server, settings=peak.services.settings).get_deployment("churn-live")
    assert rest == sdk.state["timing"] == timing
    line = timing_line(live_server)
    assert "promoted at 2030-03-17 18:01 UTC by policy" in line
    assert "last check allowed at 2030-03-17 18:01 UTC" in line and "held" not in line


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_person_acting_on_a_held_start_settles_the_timing(
    live_server: str, action: str, peak: Peak
) -> None:
    peak.create("weak", "good", PEAK_HOUR + 10 * 60_000)
    created = peak.service.get("churn-live")
    assert created.state["timing"]["held"] == "start"
    peak.clock.now += 5 * 60_000
    done = getattr(peak.service, action)("churn-live", actor="bo")
    outcome = {"promote": "promoted", "rollback": "rolled_back"}[action]
    assert done.status == outcome
    timing = done.state["timing"]
    assert timing["settled"] == {"outcome": outcome, "at_ms": peak.clock.now, "actor": "bo"}
    assert (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)
    # the last check stays what it was: the person acted at peak, not the timing
    assert timing["checked_ms"] == created.state["timing"]["checked_ms"]
    assert not timing["allowed"]
    line = timing_line(live_server)
    assert f"{outcome.replace('_', ' ')} at 2030-03-17 17:15 UTC by bo" in line
    assert "not allowed (peak traffic" in line and "held since" not in line
    assert peak.service.evaluate("churn-live") is None  # finished: the controller leaves it
