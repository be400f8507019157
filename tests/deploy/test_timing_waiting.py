"""R-TRN-21: a held step whose next tick in an allowed hour does not move is no longer held.

``state.timing`` then records that check (allowed, when) and what each arm waits for now
(the controller's own verdict and reason), the same over REST, SDK and ``keel deploy show``;
a later move is held or let through as before. Traffic and peak hour:
:mod:`tests.deploy._timing_setup` (the ``peak`` fixture).
"""

from __future__ import annotations

import httpx
from tests.deploy._timing_setup import HOUR_MS, PEAK_HOUR, Peak, timing_line

from keel import Client


def test_a_held_step_that_no_longer_moves_in_an_allowed_hour_is_not_held(
    live_server: str, peak: Peak
) -> None:
    models = peak.create("one_feature", "good", PEAK_HOUR - 60_000)
    peak.clock.now = PEAK_HOUR + 30_000  # gates met, no labels yet: the advance is held at peak
    held = peak.serve(models, 1500, 1, label=False)
    assert held is not None and held.state["timing"]["held"] == "step"
    # the quiet hour: the first labels make the (better) canary look worse on its ~10 rows
    peak.clock.now = PEAK_HOUR + HOUR_MS + 1_000
    waiting = peak.serve(models, 200, 13)
    assert waiting is not None and waiting.weights == {"primary": 95.0, "canary": 5.0}
    timing = waiting.state["timing"]
    assert (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)
    assert timing["allowed"] and timing["checked_ms"] == peak.clock.now
    evaluation = peak.services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    assert evaluation.details["action"] == "hold"
    wait = {"verdict": "keep_collecting", "reason": evaluation.details["reasons"][-1]}
    assert timing["waiting"] == {"canary": wait} and "looks worse so far" in wait["reason"]
    rest = httpx.get(f"{live_server}/v1/deployments/churn-live").json()["state"]["timing"]
    sdk = Client(live_server, settings=peak.services.settings).get_deployment("churn-live")
    assert rest == sdk.state["timing"] == timing
    line = timing_line(live_server)
    assert "allowed at 2030-03-17 18:01 UTC" in line and "held" not in line
    assert "canary waits (keep_collecting): step gates met, but roc_auc looks worse" in line
    # more labels: the step moves, recorded as before, and nothing waits any more
    peak.clock.now += 10 * 60_000
    moved = peak.serve(models, 1500, 4)
    assert moved is not None and moved.weights == {"primary": 75.0, "canary": 25.0}
    assert moved.state["timing"]["allowed"] and moved.state["timing"]["held"] is None
    assert moved.state["timing"]["checked_ms"] == peak.clock.now
    assert "waiting" not in moved.state["timing"]
    step = peak.services.decisions.query(deployment="churn-live", kind="rollout_step")[0]
    assert "step gates met" in step.summary and len(peak.holds()) == 1
