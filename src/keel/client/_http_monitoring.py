"""Monitoring and job calls of :class:`~keel.client._http.HttpTransport`."""

from __future__ import annotations

from typing import Any

from keel.automation.job_models import Job, Schedule
from keel.client._http_base import HttpBase, q
from keel.monitoring.models import Monitor, MonitorRun, MonitorSpec, SavedMonitor

__all__ = ["HttpMonitoring"]


class HttpMonitoring(HttpBase):
    """Feedback, monitors, their runs, jobs and schedules over the REST API."""

    def submit_feedback(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/v1/feedback", json={"items": items}).json()
        return result

    def create_monitor(self, spec: MonitorSpec, drop_resolution_rules: bool) -> SavedMonitor:
        body = spec.model_dump(mode="json")
        params = {"drop_resolution_rules": "true"} if drop_resolution_rules else {}
        return self._call("POST", "/v1/monitors", SavedMonitor, json=body, params=params)

    def get_monitor(self, name: str) -> Monitor:
        return self._call("GET", f"/v1/monitors/{q(name)}", Monitor)

    def list_monitors(self) -> list[Monitor]:
        return self._call_list("GET", "/v1/monitors", Monitor)

    def delete_monitor(self, name: str) -> None:
        self._request("DELETE", f"/v1/monitors/{q(name)}")

    def run_monitor(self, name: str, window_end_ms: int | None, as_of_ms: int | None) -> MonitorRun:
        params = {"window_end": window_end_ms, "as_of": as_of_ms}
        url = f"/v1/monitors/{q(name)}/run"
        return self._call(
            "POST", url, MonitorRun, params={k: v for k, v in params.items() if v is not None}
        )

    def monitor_runs(self, name: str, limit: int) -> list[MonitorRun]:
        url = f"/v1/monitors/{q(name)}/runs"
        return self._call_list("GET", url, MonitorRun, params={"limit": limit})

    def monitor_run(self, name: str, run_id: str) -> MonitorRun:
        return self._call("GET", f"/v1/monitors/{q(name)}/runs/{q(run_id)}", MonitorRun)

    def monitor_report(self, name: str, run_id: str) -> str:
        return self._request("GET", f"/v1/monitors/{q(name)}/runs/{q(run_id)}/report").text

    def monitor_diagnosis(self, name: str, run_id: str, slice_by: list[str]) -> dict[str, Any]:
        url = f"/v1/monitors/{q(name)}/runs/{q(run_id)}/diagnosis"
        result: dict[str, Any] = self._request("GET", url, params={"slice_by": slice_by}).json()
        return result

    # ---- jobs --------------------------------------------------------------------------------
    def list_jobs(self, status: str | None, kind: str | None, limit: int) -> list[Job]:
        params = {"status": status, "kind": kind, "limit": limit}
        return self._call_list("GET", "/v1/jobs", Job, params=params)

    def get_job(self, job_id: str) -> Job:
        return self._call("GET", f"/v1/jobs/{q(job_id)}", Job)

    def cancel_job(self, job_id: str) -> Job:
        return self._call("POST", f"/v1/jobs/{q(job_id)}/cancel", Job)

    def list_schedules(self) -> list[Schedule]:
        return self._call_list("GET", "/v1/schedules", Schedule)

    def schedule_monitor(self, name: str, cron: str | None) -> Schedule:
        url = f"/v1/monitors/{q(name)}/schedule"
        return self._call("PUT", url, Schedule, json={} if cron is None else {"cron": cron})

    def unschedule_monitor(self, name: str) -> None:
        self._request("DELETE", f"/v1/monitors/{q(name)}/schedule")
