"""The one duration grammar (issue #15, item 25) and the call sites that read it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from keel._durations import (
    Duration,
    DurationText,
    PositiveDuration,
    PositiveDurationText,
    parse_age_s,
    parse_duration_s,
)
from keel._models import invalid_input
from keel.automation.retrain.spec import parse_job_args
from keel.automation.triggers.models import parse_trigger
from keel.deploy.policy import parse_policy
from keel.errors import InvalidInput
from keel.features.models import FeatureView
from keel.monitoring.models import MonitorSpec
from keel.serving.predquery import parse_time

VIEW = {
    "name": "v",
    "entities": ["e"],
    "features": [{"name": "x", "dtype": "float64"}],
    "source": {"type": "file", "path": "x.parquet"},
}
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
    view = FeatureView.model_validate({**VIEW, "ttl": text, "freshness_sla": text})
    assert view.ttl == view.freshness_sla == seconds
    moment = parse_time(text, "start")
    assert moment is not None
    expected = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    assert abs((moment - expected).total_seconds()) < 5


def test_times_still_read_as_times() -> None:
    assert parse_time("2024-01-01", "start") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_duration_types_seconds_or_text_positive_or_not() -> None:
    assert TypeAdapter(Duration).validate_python("0s") == 0
    assert TypeAdapter(PositiveDuration).validate_python(dt.timedelta(hours=1)) == 3_600
    assert TypeAdapter(Duration | None).validate_python(None) is None
    assert TypeAdapter(DurationText).validate_python("7d") == "7d"  # kept as written
    with pytest.raises(ValidationError, match="longer than zero"):
        TypeAdapter(PositiveDurationText).validate_python("0d")
    with pytest.raises(ValidationError, match="Value error, expected a duration like 90s"):
        TypeAdapter(Duration).validate_python(True)


def _monitor(document: dict[str, Any]) -> object:
    try:
        return MonitorSpec.model_validate(document)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def _view(document: dict[str, Any]) -> object:
    try:
        return FeatureView.model_validate({**VIEW, **document})
    except ValidationError as exc:
        raise invalid_input(exc) from None


BAD = "3 days"
_ARMS = [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}]
_POLICY = {"name": "d", "model": "m", "strategy": "canary", "arms": _ARMS}
_TRIGGER = {"name": "t", "model": "m", "any": [{"metric": "manual"}]}
_SHIFT = {"metric": "accuracy", "below": 0.8}


def _retrain(**section: Any) -> dict[str, Any]:
    return {"model": "m", "retrain": {"train": "os:getcwd", **section}}


#: Every kind of pydantic model that reads a duration, given a bad one, and the field it names.
BAD_DURATIONS: list[tuple[Callable[[Any], object], dict[str, Any], str]] = [
    (_monitor, {"name": "m", "model": "churn", "window": BAD}, "window"),
    (_view, {"freshness_sla": BAD}, "freshness_sla"),
    (parse_trigger, {**_TRIGGER, "window": BAD}, "window"),
    (parse_trigger, {**_TRIGGER, "min_interval": BAD}, "min_interval"),
    (parse_trigger, {**_TRIGGER, "any": [{**_SHIFT, "baseline": BAD}]}, "any[0].baseline"),
    (
        parse_policy,
        {**_POLICY, "guardrails": {"p99_latency": {"for": BAD}}},
        "guardrails.p99_latency.for",
    ),
    (parse_policy, {**_POLICY, "max_step_duration": BAD}, "max_step_duration"),
    (parse_job_args, _retrain(window=BAD), "args.retrain.window"),
    (parse_job_args, _retrain(fit_timeout=BAD), "args.retrain.fit_timeout"),
    (
        parse_job_args,
        _retrain(data_validation={"quarantine": {"period": BAD}}),
        "args.retrain.data_validation.quarantine.period",
    ),
    (parse_job_args, _retrain(incremental={"settle": BAD}), "args.retrain.incremental.settle"),
    (parse_job_args, _retrain(split={"holdout": BAD}), "args.retrain.split.holdout"),
]


@pytest.mark.parametrize(
    ("parse", "document", "field"), BAD_DURATIONS, ids=[f for *_, f in BAD_DURATIONS]
)
def test_every_duration_field_names_itself_once(
    parse: Callable[[Any], object], document: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(document)
    assert caught.value.field == field
    assert (
        caught.value.message
        == f"{field}: expected a duration like 90s, 30m, 6h, 7d or 1w, got {BAD!r}"
    )
