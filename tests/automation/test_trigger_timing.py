"""R-TRN-21 timing: a met trigger at a peak hour of week (from the logged traffic) or outside
its allowed hours/days is deferred with the numbers, and fires at a later evaluation once the
time is allowed, even when its conditions no longer hold (no lost fire)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
import tests.automation.triggerdata as data
from scipy import stats

from keel.errors import InvalidInput
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

Env = tuple[Services, Any]
HOUR_MS = data.HOUR_MS
#: Tuesday 2030-01-08 10:30 UTC, long after the fixture's own traffic.
NOW = int(dt.datetime(2030, 1, 8, 10, 30, tzinfo=dt.UTC).timestamp() * 1000)
HOUR_START = NOW - NOW % HOUR_MS


def per_hour(slot: int) -> int:
    """The traffic profile: weekdays 10:00-14:59 UTC are busy (8-16 an hour), else 2."""
    day, hour = divmod(slot, 24)
    return 8 + (day + hour) % 9 if day < 5 and 10 <= hour < 15 else 2


def log_four_weeks(services: Services, model: Any, rows: Any) -> np.ndarray:
    """The profile logged hour by hour over the 4 weeks before NOW's hour; the expected
    mean per hour of week."""
    features = rows[data.FEATURES].to_dict("records")
    proba = model.predict_proba(rows[data.FEATURES])
    start = HOUR_START - 4 * 7 * 24 * HOUR_MS
    expected = np.zeros(168)
    i = 0
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05) as log:
        for hour_ms in range(start, HOUR_START, HOUR_MS):
            moment = dt.datetime.fromtimestamp(hour_ms / 1000, dt.UTC)
            slot = moment.weekday() * 24 + moment.hour
            n = per_hour(slot)
            expected[slot] += n / 4
            for k in range(n):
                j = i % len(features)
                log.append(
                    PredictionRecord(
                        request_id=f"t{i}",
                        at_ms=hour_ms + k * 60_000,
                        model="churn",
                        version=1,
                        features=features[j],
                        output=int(proba[j][1] >= 0.5),
                        probabilities=[float(proba[j][0]), float(proba[j][1])],
                        latency_ms=1.0,
                    )
                )
                i += 1
        assert log.flush()
    return expected


def hand(timing: dict[str, Any]) -> dict[str, Any]:
    return {"name": "hand", "model": "churn", "any": [{"metric": "manual"}], "timing": timing}


def test_peak_hour_defers_and_the_fire_is_not_lost(
    trigger_env: Env, churn_rows: tuple[Any, Any]
) -> None:
    services, model = trigger_env
    expected = log_four_weeks(services, model, churn_rows[1].iloc[:500])
    services.triggers.apply(hand({"avoid_peak": {"percentile": 80, "weeks": 4}}))
    deferred = services.triggers.evaluate("hand", NOW, manual=True, actor="alice")
    assert deferred.met and not deferred.fired and "deferred: peak traffic" in deferred.reason
    peak = deferred.timing["peak"]  # type: ignore[index]
    slot = 1 * 24 + 10  # Tuesday 10:00
    assert peak["hour_of_week"] == slot and peak["current_mean"] == expected[slot]
    assert peak["threshold"] == pytest.approx(stats.scoreatpercentile(expected, 80))
    assert peak["predictions"] == int(expected.sum() * 4)
    assert peak["next_quiet_ms"] == HOUR_START + 5 * HOUR_MS  # Tuesday 15:00
    assert services.jobs.list_jobs(kind="retrain.run") == []
    # an hour later, not asked for by hand any more: still peak, the fire still owed
    still = services.triggers.evaluate("hand", NOW + HOUR_MS)
    assert not still.met and not still.fired and still.reason.startswith("deferred fire of")
    # the quiet hour: the owed fire goes out, once
    fired = services.triggers.evaluate("hand", HOUR_START + 5 * HOUR_MS + 600_000)
    assert fired.fired and fired.job_id and not fired.timing["peak"]["peak"]  # type: ignore[index]
    after = services.triggers.evaluate("hand", HOUR_START + 5 * HOUR_MS + 1_200_000)
    assert not after.fired and after.reason.startswith("not met")
    assert len(services.jobs.list_jobs(kind="retrain.run")) == 1
    records = services.decisions.query(model="churn", kind="trigger_evaluation")
    assert [r.details["pending_fire"] is not None for r in reversed(records)] == [
        True,
        True,
        False,
        False,
    ]


def test_too_little_traffic_is_never_a_peak(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(hand({"avoid_peak": True}))
    result = services.triggers.evaluate("hand", NOW, manual=True)
    assert result.fired
    assert result.timing["peak"]["predictions"] == 0  # type: ignore[index]
    assert "need 168" in result.timing["peak"]["note"]  # type: ignore[index]


def test_allowed_hours_and_days_defer_to_the_next_window(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(hand({"allowed_hours": "22-06", "allowed_days": ["sat", "SUN"]}))
    wednesday = int(dt.datetime(2030, 1, 9, 12, tzinfo=dt.UTC).timestamp() * 1000)
    saturday = int(dt.datetime(2030, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)
    deferred = services.triggers.evaluate("hand", wednesday, manual=True)
    window = deferred.timing["window"]  # type: ignore[index]
    assert not deferred.fired and window["cron"] == "* 22-06 * * sat,sun"
    assert window["next_allowed_ms"] == saturday and "2030-01-12T00:00" in deferred.reason
    assert not services.triggers.evaluate("hand", saturday - 60_000).fired
    fired = services.triggers.evaluate("hand", saturday + 3 * HOUR_MS)
    assert fired.fired and fired.timing["window"]["inside"]  # type: ignore[index]
    # Saturday noon is outside 22-06: a new manual ask waits for the evening
    late = services.triggers.evaluate("hand", saturday + 12 * HOUR_MS + 86_400_000, manual=True)
    assert "cooldown" not in late.reason and not late.fired


@pytest.mark.parametrize(
    ("timing", "field", "words"),
    [
        ({"allowed_hours": "25-3"}, "timing.allowed_hours", "'25-3'"),
        ({"allowed_hours": "nights"}, "timing.allowed_hours", "'nights'"),
        ({"allowed_days": ["sat", "funday"]}, "timing.allowed_days", "'funday'"),
        ({"avoid_peak": {"percentile": 120}}, "timing.avoid_peak", "percentile"),
        ({"avoid_peak": {"weeks": 0}}, "timing.avoid_peak", "weeks"),
        ({"quiet": True}, "timing.quiet", "quiet"),
    ],
)
def test_bad_timing_names_the_field(
    trigger_env: Env, timing: dict[str, Any], field: str, words: str
) -> None:
    services, _ = trigger_env
    with pytest.raises(InvalidInput) as caught:
        services.triggers.apply(hand(timing))
    assert caught.value.field is not None and caught.value.field.startswith(field)
    assert words in caught.value.message
    assert services.triggers.list_triggers() == []
