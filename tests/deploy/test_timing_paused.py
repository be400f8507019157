"""R-TRN-21: pausing a deployment whose step (or start) the timing holds ends the hold.

Nothing moves while paused, so ``state.timing`` claims no hold and no retry time; it says
who paused it, when, and what the timing held then (``paused``). On resume the hold logic
applies afresh: the next tick in a disallowed hour holds again with one new ``timing_hold``
decision, and a start held before the pause is held again (the pause never lets it through).
REST, SDK and ``keel deploy show`` say the same. Traffic and peak hour:
:mod:`tests.deploy._timing_setup` (the ``peak`` fixture).
"""

from __future__ import annotations

from typing import Any

import httpx
from tests.deploy._timing_setup import HOUR_MS, PEAK_HOUR, Peak, timing_line
from typer.testing import CliRunner

from keel import Client
from keel.cli.main import app as cli

PAUSED_BY = {"x-keel-user": "bo"}


def no_pending_hold(timing: dict[str, Any]) -> bool:
    return (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)


def shown_alike(live_server: str, peak: Peak) -> dict[str, Any]:
    """``state.timing`` over REST, checked equal to the SDK's and the service's."""
    rest = httpx.get(f"{live_server}/v1/deployments/churn-live").json()["state"]["timing"]
    sdk = Client(live_server, settings=peak.services.settings).get_deployment("churn-live")
    assert rest == sdk.state["timing"] == peak.service.get("churn-live").state["timing"]
    return dict(rest)


def test_a_paused_held_step_is_not_held_and_resume_holds_it_again_once(
    live_server: str, peak: Peak
) -> None:
    models = peak.create("weak", "good", PEAK_HOUR - 60_000)
    peak.clock.now = PEAK_HOUR + 30_000  # step gates met at peak: the advance is held
    held = peak.serve(models, 1500, 1)
    assert held is not None and held.state["timing"]["held"] == "step"
    assert len(peak.holds()) == 1
    peak.clock.now = PEAK_HOUR + 5 * 60_000
    url = f"{live_server}/v1/deployments/churn-live"
    paused = httpx.post(f"{url}/pause", headers=PAUSED_BY, json={"reason": "incident"})
    assert paused.status_code == 200, paused.text
    timing = paused.json()["state"]["timing"]
    assert no_pending_hold(timing) and timing == shown_alike(live_server, peak)
    assert timing["paused"] == {"at_ms": peak.clock.now, "actor": "bo", "held": "step"}
    # the last check stays: not allowed at peak, when the hold was recorded
    assert not timing["allowed"] and timing["checked_ms"] == held.state["timing"]["checked_ms"]
    line = timing_line(live_server)
    assert "paused at 2030-03-17 17:05 UTC by bo; step not held while paused" in line
    assert "held since" not in line and "next allowed" not in line
    assert "last check not allowed (peak traffic" in line
    assert peak.serve(models, 600, 2) is None  # paused: the controller leaves it alone
    # resumed still in the peak hour: held again at the next tick, one new hold record
    peak.clock.now = PEAK_HOUR + 20 * 60_000
    resumed = CliRunner().invoke(cli, ["deploy", "resume", "churn-live", "--server", live_server])
    assert resumed.exit_code == 0, resumed.output
    timing = shown_alike(live_server, peak)
    assert no_pending_hold(timing) and "paused" not in timing
    again = peak.serve(models, 600, 3)
    assert again is not None and again.weights == {"primary": 95.0, "canary": 5.0}
    timing = shown_alike(live_server, peak)
    assert timing["held"] == "step" and timing["held_since_ms"] == peak.clock.now
    assert timing["retry_at_ms"] == PEAK_HOUR + HOUR_MS
    newest, first = peak.holds()
    assert newest.at_ms == timing["held_since_ms"] and first.at_ms == PEAK_HOUR + 30_000 + 61_000
    assert newest.summary.startswith("canary at 5% held: peak traffic")
    peak.clock.now = PEAK_HOUR + 40 * 60_000  # later in the hour: held, no further record
    assert peak.serve(models, 600, 4) is not None and len(peak.holds()) == 2
    assert "step held since 2030-03-17 17:21 UTC" in timing_line(live_server)


def test_a_paused_held_start_is_held_again_on_resume_until_an_allowed_hour(
    live_server: str, peak: Peak
) -> None:
    peak.create("weak", "good", PEAK_HOUR + 10 * 60_000)
    assert len(peak.holds()) == 1  # the start, held at creation
    peak.clock.now = PEAK_HOUR + 15 * 60_000
    paused = peak.service.pause("churn-live", actor="bo")
    assert paused.weights == {"primary": 100.0, "canary": 0.0}
    timing = shown_alike(live_server, peak)
    assert no_pending_hold(timing)
    assert timing["paused"] == {"at_ms": peak.clock.now, "actor": "bo", "held": "start"}
    assert "start not held while paused" in timing_line(live_server)
    peak.clock.now = PEAK_HOUR + 20 * 60_000
    resumed = peak.service.resume("churn-live", actor="bo")
    timing = resumed.state["timing"]
    assert "paused" not in timing and timing["held"] == "start"  # the pause let nothing through
    assert timing["held_since_ms"] == peak.clock.now and timing["retry_at_ms"] is None
    peak.clock.now = PEAK_HOUR + 25 * 60_000  # still at peak: held, one new hold record
    again = peak.service.evaluate("churn-live")
    assert again is not None and again.weights == {"primary": 100.0, "canary": 0.0}
    assert again.state["timing"]["retry_at_ms"] == PEAK_HOUR + HOUR_MS
    newest, _ = peak.holds()
    assert newest.summary.startswith("rollout start held: peak traffic")
    assert newest.at_ms == peak.clock.now
    assert "start held since 2030-03-17 17:20 UTC" in timing_line(live_server)
    peak.clock.now = PEAK_HOUR + HOUR_MS + 5_000  # the quiet hour: started
    started = peak.service.evaluate("churn-live")
    assert started is not None and started.weights == {"primary": 95.0, "canary": 5.0}
    assert len(peak.holds()) == 2
