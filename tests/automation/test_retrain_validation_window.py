"""R-TRN-21 training-window sanity (weekend-only rows refused naming the missing days, hour
coverage against the reference's hours, min_span) and the data_validation spec's bad values
(422 naming the field over REST, InvalidInput from the SDK's parser)."""

from __future__ import annotations

import datetime as dt

import httpx
import numpy as np
import pandas as pd
import pytest
import tests.automation.retrain_train as user_code
from tests.automation.test_retrain import (  # noqa: F401
    DAY_MS,
    churn,
    log_days,
    run_job,
    spec,
    svc,
)
from tests.automation.test_retrain_validation import champion  # noqa: F401
from tests.conftest import serve_in_thread

from keel._models import now_ms
from keel.api.app import create_app
from keel.automation.retrain.spec import parse_job_args
from keel.automation.retrain.validation_spec import WindowSpec
from keel.automation.retrain.window import check_window
from keel.errors import InvalidInput
from keel.services import Services

HOUR_MS = 3_600_000


def log_weekends(services: Services, rows: pd.DataFrame) -> int:
    """``rows`` on the Saturdays and Sundays of the last 28 days only; the days used."""
    today = now_ms() // DAY_MS * DAY_MS
    days = [
        today - d * DAY_MS
        for d in range(1, 29)
        if dt.datetime.fromtimestamp((today - d * DAY_MS) / 1000, dt.UTC).weekday() >= 5
    ]
    per_day = len(rows) // len(days)
    for i, start in enumerate(days):
        log_days(services, rows.iloc[i * per_day : (i + 1) * per_day], start + 10 * HOUR_MS, 1)
    return len(days)


def test_a_weekend_only_window_is_refused_naming_the_missing_days(
    champion: Services,  # noqa: F811
    churn: pd.DataFrame,  # noqa: F811
) -> None:
    assert log_weekends(champion, churn.iloc[600:]) == 8
    job = run_job(champion, {"model": "churn", "retrain": spec()})
    assert job.status == "succeeded", job.traceback
    assert job.result["refused"] is True and user_code.SEEN == []
    [failure] = job.result["data_validation"]["failures"]
    assert failure["check"] == "window_days"
    assert "no rows on Mon, Tue, Wed, Thu, Fri" in failure["message"]
    assert "present: Sat, Sun" in job.result["reason"]
    window = job.result["data_validation"]["window"]
    assert window["days_missing"] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert window["day_shares"]["Sat"] + window["day_shares"]["Sun"] == pytest.approx(1.0)
    [decision] = champion.decisions.query(model="churn", kind="retraining")
    assert "Mon, Tue, Wed, Thu, Fri" in decision.summary
    # warn instead of refuse: it trains, and the finding stays in the result
    warn = spec(data_validation={"window": {"action": "warn"}}, experiment="warned")
    job = run_job(champion, {"model": "churn", "retrain": warn})
    assert job.status == "succeeded" and job.result["version"] == 2, job.result
    assert [w["check"] for w in job.result["data_validation"]["warnings"]] == ["window_days"]


def _stamps(start_ms: int, days: int, hours: range, weekdays: set[int]) -> np.ndarray:
    """One row per hour in ``hours`` on each day of ``weekdays`` (Mon = 0) from ``start``."""
    out = []
    for d in range(days):
        day = start_ms + d * DAY_MS
        if dt.datetime.fromtimestamp(day / 1000, dt.UTC).weekday() in weekdays:
            out += [day + h * HOUR_MS + 60_000 for h in hours]
    return np.array(out, dtype=np.int64)


MONDAY = 1_924_819_200_000  # 2030-12-30T00:00Z, a Monday


def test_hour_coverage_against_the_reference_hours() -> None:
    reference = _stamps(MONDAY - 28 * DAY_MS, 28, range(24), set(range(7)))  # every hour
    office = _stamps(MONDAY, 21, range(9, 18), set(range(5)))  # weekdays 9-17h only
    numbers, [days, hours] = check_window(office, reference, 21 * 86_400, WindowSpec())
    assert days.check == "window_days" and "Sat, Sun" in days.message
    assert numbers["hours"] == {"unit": "hours of the week", "usual": 168, "covered": 45,
                                "coverage": round(45 / 168, 4)}  # fmt: skip
    assert hours.check == "window_hours" and hours.value == pytest.approx(45 / 168)
    assert "Mon 0-8, 18-23h" in hours.message and "Sun 0-23h" in hours.message
    # an office-hours reference makes the same window representative
    same = _stamps(MONDAY - 28 * DAY_MS, 28, range(9, 18), set(range(5)))
    numbers, found = check_window(office, same, 21 * 86_400, WindowSpec())
    assert found == [] and numbers["hours"]["coverage"] == 1.0 and numbers["days_missing"] == []
    # two days of night rows vs an all-day reference: hours of the day, 8 of 24
    nights = _stamps(MONDAY, 2, range(0, 8), set(range(7)))
    numbers, [short] = check_window(nights, reference, 2 * 86_400, WindowSpec())
    assert numbers["hours"]["unit"] == "hours of the day" and "days_missing" not in numbers
    assert short.value == pytest.approx(8 / 24) and "missing: 8-23h" in short.message
    # looser coverage passes it; min_span refuses a span under it
    assert check_window(nights, reference, 2 * 86_400, WindowSpec(min_hours_coverage=0.3))[1] == []
    _, [span] = check_window(nights, None, 2 * 86_400, WindowSpec(min_span="7d"))
    assert span.check == "window_span" and span.threshold == 7


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"max_missing_share": 1.5}, "data_validation.max_missing_share"),
        ({"quarantine": {"max_share": -0.1}}, "data_validation.quarantine.max_share"),
        ({"quarantine": {"period": "one day"}}, "data_validation.quarantine.period"),
        ({"window": {"action": "ignore"}}, "data_validation.window.action"),
        ({"window": {"min_span": "0d"}}, "data_validation.window.min_span"),
        ({"skew": {"max_ks": 0}}, "data_validation.skew.max_ks"),
        ({"max_nulls": 0.1}, "data_validation.max_nulls"),
        ("yes", "data_validation"),
    ],
)
def test_bad_data_validation_values_name_the_field(
    champion: Services,  # noqa: F811
    section: object,
    field: str,
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_args({"model": "churn", "retrain": spec(data_validation=section)})
    assert caught.value.field == f"args.retrain.{field}"
    trigger = {
        "name": "nightly",
        "model": "churn",
        "any": [{"metric": "schedule", "cron": "@monthly"}],
        "retrain": spec(data_validation=section),
    }
    with serve_in_thread(create_app(services=champion)) as url, httpx.Client(base_url=url) as http:
        response = http.put("/v1/triggers", json=trigger)
        assert response.status_code == 422, response.text
        assert f"retrain.{field}" in response.text
        assert http.get("/v1/triggers").json() == []  # nothing stored
