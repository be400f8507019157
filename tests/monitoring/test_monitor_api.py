"""Feedback and monitors over HTTP against a real uvicorn server."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd
import pytest
from tests.monitoring.conftest import serve_rows

from keel.demo.data import TARGET
from keel.services import Services
from keel.serving.predlog import log_root


@pytest.fixture
def api(
    services: Services, live_server: str, churn: tuple[pd.DataFrame, pd.DataFrame], churn_model: Any
) -> tuple[httpx.Client, list[str], pd.DataFrame]:
    rows = churn[1].head(400)
    ids = serve_rows(churn_model, rows, log_root(services.settings))
    with httpx.Client(base_url=live_server, timeout=60) as http:
        yield http, ids, rows


def test_feedback_monitor_run_and_report(api: tuple) -> None:
    http, ids, rows = api
    labels = [{"request_id": i, "label": int(y)} for i, y in zip(ids, rows[TARGET], strict=True)]
    first = http.post("/v1/feedback", json={"items": labels + [{"request_id": "zz", "label": 1}]})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "accepted": 401,
        "duplicates": 0,
        "unknown": 1,
        "unknown_examples": ["zz"],
    }
    again = http.post("/v1/feedback", json={"items": labels[:10]}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 10)

    spec = {
        "name": "churn-1h",
        "model": "churn",
        "window": "2h",
        "task": "classification",
        "label_column": TARGET,
    }
    created = http.post("/v1/monitors", json=spec)
    assert created.status_code == 201, created.text
    assert [m["name"] for m in http.get("/v1/monitors").json()] == ["churn-1h"]
    run = http.post("/v1/monitors/churn-1h/run")
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["status"] == "ok" and body["n_current"] == 400 and body["n_labelled"] == 400
    listed = http.get("/v1/monitors/churn-1h/runs").json()
    assert [r["id"] for r in listed] == [body["id"]]
    report = http.get(f"/v1/monitors/churn-1h/runs/{body['id']}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "tenure" in report.text and "<svg" in report.text and "accuracy" in report.text
    assert "<script" not in report.text  # self-contained, no JavaScript
    diagnosis = http.get(f"/v1/monitors/churn-1h/runs/{body['id']}/diagnosis")
    assert diagnosis.status_code == 200, diagnosis.text
    assert diagnosis.json()["verdict"] == "no clear cause"
    assert diagnosis.json()["scores"]["concept drift"] is not None
    assert http.delete("/v1/monitors/churn-1h").status_code == 204
    assert http.get("/v1/monitors/churn-1h").status_code == 404


@pytest.mark.parametrize(
    ("path", "payload", "status", "needle"),
    [
        ("/v1/feedback", {"items": [{"request_id": "a", "label": [1]}]}, 422, "items[0].label"),
        ("/v1/feedback", {"rows": []}, 422, "items"),
        ("/v1/monitors", {"name": "m", "model": "churn", "window": "7 days"}, 422, "window"),
        ("/v1/monitors", {"name": "m", "model": "nope"}, 404, "nope"),
        ("/v1/monitors", {"name": "m", "model": "churn", "colour": 1}, 422, "colour"),
        ("/v1/monitors/none/run", None, 404, "none"),
    ],
)
def test_bad_requests(api: tuple, path: str, payload: Any, status: int, needle: str) -> None:
    http, *_ = api
    response = http.post(path, json=payload)
    assert response.status_code == status, response.text
    assert needle in response.text
    assert http.get("/v1/monitors").json() == []
