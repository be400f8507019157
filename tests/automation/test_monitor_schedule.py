"""R-MON-14: a monitor with a schedule runs as a `monitor.run` job at each firing."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from tests.automation.conftest import drain
from tests.monitoring.conftest import churn, churn_model, serve_rows  # noqa: F401

from keel.client import Client
from keel.demo.data import TARGET
from keel.services import Services
from keel.serving.predlog import log_root


@pytest.mark.parametrize("backend", ["sqlite"])
def test_scheduled_monitor_runs_once_per_period(
    services: Services,
    churn: tuple[pd.DataFrame, pd.DataFrame],  # noqa: F811
    churn_model: Any,  # noqa: F811
) -> None:
    serve_rows(churn_model, churn[1].head(300), log_root(services.settings))
    client = Client(settings=services.settings)
    client.create_monitor(
        "churn-hourly", "churn", window="2h", task="classification", label_column=TARGET
    )
    schedule = client.schedule_monitor("churn-hourly", "@hourly")
    assert (schedule.name, schedule.kind, schedule.cron) == (
        "monitor:churn-hourly",
        "monitor.run",
        "0 * * * *",
    )
    assert schedule.args == {"monitor": "churn-hourly"} and schedule.next_fire_at_ms
    firing = schedule.next_fire_at_ms
    fired = services.jobs.tick(now=firing + 5_000)
    assert [j.schedule for j in fired] == ["monitor:churn-hourly"]
    assert services.jobs.tick(now=firing + 65_000) == []  # same period: nothing more
    drain(services.jobs)
    job = client.get_job(fired[0].id)
    assert job.status == "succeeded", job.traceback
    runs = client.monitor_runs("churn-hourly")
    assert [r.id for r in runs] == [job.result["run_id"]] and runs[0].n_current == 300
    listed = client.list_schedules()[0]
    assert listed.last_fired_at_ms == firing and listed.last_job_id == job.id
    client.unschedule_monitor("churn-hourly")
    assert client.list_schedules() == []
    client.close()
