"""Jobs and schedules through the SDK on both transports (embedded and a live server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.automation.conftest import drain

from keel.client import Client
from keel.errors import Conflict, InvalidInput, NotFound
from keel.services import Services


def test_client_lists_shows_and_cancels_jobs(
    client: Client, services: Services, tmp_path: Path
) -> None:
    done = services.jobs.enqueue("test.count", {"path": str(tmp_path / "a")})
    drain(services.jobs)
    waiting = services.jobs.enqueue("test.count", {"path": str(tmp_path / "b")}, delay_s=3600)
    assert [j.id for j in client.list_jobs()] == [waiting.id, done.id]
    assert [j.id for j in client.list_jobs(status="succeeded")] == [done.id]
    assert client.list_jobs(kind="monitor.run") == []
    shown = client.get_job(done.id)
    assert shown.status == "succeeded" and shown.logs[-1].message == "succeeded"
    assert client.cancel_job(waiting.id).status == "cancelled"
    with pytest.raises(Conflict):
        client.cancel_job(done.id)
    with pytest.raises(NotFound):
        client.get_job("missing")
    with pytest.raises(InvalidInput) as error:
        client.list_jobs(status="sleeping")
    assert error.value.field == "status"


def test_schedule_monitor_bad_input(client: Client) -> None:
    with pytest.raises(InvalidInput) as error:
        client.schedule_monitor("churn", "0 25 * * *")
    assert error.value.field == "cron" and "hour '25'" in error.value.message
    with pytest.raises(NotFound):  # no such monitor: refused now, not at the first firing
        client.schedule_monitor("churn", "0 * * * *")
    with pytest.raises(NotFound):  # the default cadence is decided server-side, same refusal
        client.schedule_monitor("churn")
    with pytest.raises(NotFound):
        client.unschedule_monitor("churn")
    assert client.list_schedules() == []


def test_jobs_routes_reject_bad_query(live_server: str) -> None:
    with httpx.Client(base_url=live_server) as http:
        for query in ("status=sleeping", "limit=0", "limit=1001"):
            response = http.get(f"/v1/jobs?{query}")
            assert response.status_code == 422, query
        bad = http.put("/v1/monitors/m/schedule", json={"cron": "* * *", "x": 1})
        assert bad.status_code == 422
        empty = http.put("/v1/monitors/m/schedule", json={"cron": ""})
        assert empty.status_code == 422 and "cron" in empty.text
        default = http.put("/v1/monitors/m/schedule", json={})  # default cadence: needs m
        assert default.status_code == 404
