"""The one duration grammar (issue #15, item 25) and the call sites that read it."""

from __future__ import annotations

import datetime as dt

import pytest

from keel._durations import parse_age_s, parse_duration_s
from keel.errors import InvalidInput
from keel.features.models import FeatureView
from keel.monitoring.models import MonitorSpec
from keel.serving.predquery import parse_time

# What the four former grammars agreed on: the same seconds everywhere.
AGREED = {"45s": 45, "30m": 1_800, "6h": 21_600, "7d": 604_800, "90d": 7_776_000}


@pytest.mark.parametrize(("text", "seconds"), [*AGREED.items(), ("1w", 604_800), ("1.5h", 5_400)])
def test_parse_duration_units(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds
    assert parse_age_s(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "d7", "-1d", "1 week", "7D", "0.5s", "nan", "1e3s"])
def test_parse_duration_refuses_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_duration_s(text, field="window")
    assert caught.value.field == "window"


@pytest.mark.parametrize("value", [True, None, -5, float("inf"), 1.5, [1]])
def test_parse_duration_refuses_non_durations(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_duration_s(value)  # type: ignore[arg-type]


def test_parse_duration_numbers_timedeltas_and_zero() -> None:
    assert parse_duration_s(90) == 90
    assert parse_duration_s("3600") == 3_600  # a bare number is seconds
    assert parse_duration_s(dt.timedelta(weeks=1)) == 604_800
    assert parse_duration_s("0s") == 0
    with pytest.raises(InvalidInput):
        parse_duration_s("0s", positive=True)
    assert parse_age_s("20240101") is None  # without a unit, a time is not an age


@pytest.mark.parametrize(("text", "seconds"), [*AGREED.items(), ("1w", 604_800)])
def test_every_call_site_reads_the_same_seconds(text: str, seconds: int) -> None:
    spec = MonitorSpec(name="m", model="churn", window=text)
    assert spec.window_s == seconds
    view = FeatureView(
        name="v",
        entities=["e"],
        features=[{"name": "x", "dtype": "float64"}],
        source={"type": "file", "path": "x.parquet"},
        ttl=text,
        freshness_sla=text,
    )
    assert view.ttl == view.freshness_sla == seconds
    moment = parse_time(text, "start")
    assert moment is not None
    expected = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    assert abs((moment - expected).total_seconds()) < 5


def test_times_still_read_as_times() -> None:
    assert parse_time("2024-01-01", "start") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
