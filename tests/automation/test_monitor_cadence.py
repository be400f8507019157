"""R-MON-14 default cadences: a monitor scheduled without a cron runs at its fastest
check's detection SLA (freshness 15 min, schema 1 h, outputs 1 h, distributions 4 h,
business metrics 24 h); an explicit cron wins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from tests.monitoring.conftest import churn, churn_model  # noqa: F401
from typer.testing import CliRunner

from keel.automation.cron import next_fire
from keel.cli.main import app
from keel.client import Client
from keel.demo.data import TARGET
from keel.monitoring.cadence import CADENCES, cadences_of, default_cron
from keel.monitoring.models import MonitorSpec
from keel.services import Services

#: the requirement's text, in minutes
R_MON_14 = {"freshness": 15, "schema": 60, "distributions": 240, "outputs": 60, "business": 1440}


def test_each_cadence_is_the_requirement_and_its_cron_fires_at_that_period() -> None:
    assert {c.check: c.minutes for c in CADENCES} == R_MON_14
    start = datetime(2026, 12, 7, 0, 0, 30, tzinfo=UTC)
    for cadence in CADENCES:
        first = next_fire(cadence.cron, start)
        second = next_fire(cadence.cron, first)
        assert (second - first).total_seconds() == cadence.minutes * 60, cadence


def test_default_cron_is_the_fastest_check_the_monitor_has() -> None:
    plain = MonitorSpec(name="m", model="churn")
    assert [c.check for c in cadences_of(plain)] == ["schema", "outputs", "distributions"]
    assert default_cron(plain) == "0 * * * *"
    labelled = MonitorSpec(name="m", model="churn", label_column=TARGET)
    assert cadences_of(labelled)[-1].check == "business"
    with_views = MonitorSpec(name="m", model="churn", feature_views=["customer"])
    assert default_cron(with_views) == "*/15 * * * *"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_schedule_without_cron_uses_the_default_and_explicit_wins(
    services: Services,
    churn_model: Any,  # noqa: F811
    churn: tuple[pd.DataFrame, pd.DataFrame],  # noqa: F811
) -> None:
    with Client(settings=services.settings) as client:
        client.create_monitor("churn-default", "churn", window="2h", label_column=TARGET)
        assert client.schedule_monitor("churn-default").cron == "0 * * * *"
    env = {
        "KEEL_HOME": str(services.settings.home),
        "KEEL_DATABASE_URL": None,
        "KEEL_SERVER_URL": None,
    }
    runner = CliRunner()
    explicit = runner.invoke(
        app, ["monitor", "schedule", "churn-default", "--cron", "*/5 * * * *"], env=env
    )
    assert explicit.exit_code == 0, explicit.output
    with Client(settings=services.settings) as client:
        assert [s.cron for s in client.list_schedules()] == ["*/5 * * * *"]
    default = runner.invoke(app, ["monitor", "schedule", "churn-default"], env=env)
    assert default.exit_code == 0, default.output
    with Client(settings=services.settings) as client:
        assert [s.cron for s in client.list_schedules()] == ["0 * * * *"]
    both = runner.invoke(
        app, ["monitor", "schedule", "churn-default", "--off", "--cron", "@daily"], env=env
    )
    assert both.exit_code == 2 and "--cron" in both.output
    unknown = runner.invoke(app, ["monitor", "schedule", "nope"], env=env)
    assert unknown.exit_code != 0 and "Traceback" not in unknown.output
