"""R-TRN-21: a person's blue-green switch ends the timing hold of that switch.

The controller holds a blue-green switch (``switch_after`` reached) in a peak hour; a person
then switches by hand (``POST /v1/deployments/{name}/switch``). The switch is made, so
``state.timing`` claims no hold and no retry time for it any more; it says who switched,
when and what the timing held then (``switched``). A promotion after verify in the same peak
hour is a new hold with its own ``timing_hold`` record. REST, SDK and ``keel deploy show``
say the same. Peak hour: :mod:`tests.deploy._timing_setup` (the ``peak`` fixture).
"""

from __future__ import annotations

from typing import Any

import httpx
from tests.deploy._timing_setup import HOUR_MS, PEAK_HOUR, TIMING, Peak, timing_line

from keel import Client

MIN = 60_000
BLUE_GREEN: dict[str, Any] = {
    "name": "churn-live",  # the timing_line helper's name
    "model": "churn",
    "strategy": "blue_green",
    "blue_green": {"switch_after": "1m", "verify": "5m"},
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "challenger"}],
    "timing": TIMING,
}


def test_a_hand_switch_ends_the_hold_of_the_switch(live_server: str, peak: Peak) -> None:
    peak.register("weak", "good")
    peak.clock.now = PEAK_HOUR - 2 * MIN  # quiet: created, blue serves everything
    peak.service.create(BLUE_GREEN, actor="ana")
    peak.clock.now = PEAK_HOUR + 30_000  # switch_after reached at peak: the switch is held
    held = peak.service.evaluate("churn-live")
    assert held is not None and held.weights == {"primary": 100.0, "challenger": 0.0}
    assert held.state["timing"]["held"] == "step"
    assert held.state["timing"]["retry_at_ms"] == PEAK_HOUR + HOUR_MS
    assert len(peak.holds()) == 1
    peak.clock.now = PEAK_HOUR + 5 * MIN
    url = f"{live_server}/v1/deployments/churn-live"
    switched = httpx.post(f"{url}/switch", headers={"x-keel-user": "bo"}, json={})
    assert switched.status_code == 200, switched.text
    timing = switched.json()["state"]["timing"]
    assert switched.json()["state"]["weights"] == {"primary": 0.0, "challenger": 100.0}
    assert (timing["held"], timing["held_since_ms"], timing["retry_at_ms"]) == (None, None, None)
    assert timing["switched"] == {"at_ms": peak.clock.now, "actor": "bo", "held": "step"}
    # the last check stays: not allowed at peak, when the switch was held
    assert not timing["allowed"] and timing["checked_ms"] == held.state["timing"]["checked_ms"]
    sdk = Client(live_server, settings=peak.services.settings).get_deployment("churn-live")
    assert sdk.state["timing"] == timing == peak.service.get("churn-live").state["timing"]
    line = timing_line(live_server)
    assert "switched to green by hand at 2030-03-17 17:05 UTC by bo" in line, line
    assert "held since" not in line and "next allowed" not in line
    # verifying green moves nothing: still no hold
    peak.clock.now = PEAK_HOUR + 7 * MIN
    verifying = peak.service.evaluate("churn-live")
    assert verifying is not None and verifying.state["timing"]["held"] is None
    # verified still at peak: the promotion is a hold of its own, recorded anew
    peak.clock.now = PEAK_HOUR + 11 * MIN
    again = peak.service.evaluate("churn-live")
    assert again is not None and again.status == "active"
    assert again.state["timing"]["held"] == "step" and "switched" not in again.state["timing"]
    newest, _ = peak.holds()
    assert newest.at_ms == peak.clock.now and "held: peak traffic" in newest.summary
    peak.clock.now = PEAK_HOUR + HOUR_MS + 1_000  # quiet: promoted
    done = peak.service.evaluate("churn-live")
    assert done is not None and done.status == "promoted"
