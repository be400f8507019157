"""An explicit ``event_time`` on predictions replayed through the gateway (#15.19), on a real
server: the model route and the deployment route, cache hits included, and the SDK on both
transports log the prediction at its event time, so a monitor run over that past window
counts it; bad values are a 422 naming ``event_time`` and log nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import Churn, live_gateway, register, test_settings, unique

from keel.client import Client
from keel.config import Settings
from keel.errors import InvalidInput
from keel.serving import predictions


def _logged(settings: Settings, model: str, expected: int) -> list[dict[str, object]]:
    """Every logged row of ``model`` once ``expected`` rows are in the log (flushed often)."""
    deadline = time.monotonic() + 10
    while True:
        rows = predictions(model, settings=settings).to_pylist()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_event_time_places_replayed_predictions_in_their_past_window(
    tmp_path: Path, churn: Churn
) -> None:
    settings = test_settings(tmp_path)
    model = unique("replay")
    example = churn.train[churn.features][:5]
    register(settings, model, churn.small, example)
    register(settings, model, churn.large, example)
    name = unique("replayed")
    with Client(settings=settings) as client:
        client.create_deployment(
            {
                "name": name,
                "model": model,
                "strategy": "ab",
                "arms": [
                    {"version": 1, "role": "primary", "weight": 50},
                    {"version": 2, "role": "challenger", "weight": 50},
                ],
            }
        )
        client.register_dataset("replay-reference", churn.train[churn.features])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    day = now - dt.timedelta(days=3)  # the replayed day: 10:00-11:00 of three days ago
    at = [day.replace(hour=10, minute=m) for m in (5, 15, 25, 35)]
    plus2 = dt.timezone(dt.timedelta(hours=2))
    rows = churn.rows(2)
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        body = {"instances": rows, "event_time": at[0].astimezone(plus2).isoformat()}
        first = http.post(f"/v1/models/{model}/1/predict", json=body)
        again = http.post(f"/v1/models/{model}/1/predict", json=body)  # a cache hit
        epoch_ms = int(at[1].timestamp() * 1000)
        routed = http.post(
            f"/v1/deployments/{name}/predict",
            json={"instances": rows, "routing_key": "u-7", "event_time": epoch_ms},
        )
        live_now = http.post(f"/v1/models/{model}/1/predict", json={"instances": rows})
        with Client(settings=settings) as local, Client(live.url) as remote:
            embedded = local.predict(name, rows, routing_key="u-8", event_time=at[2])
            over_http = remote.predict(
                f"models:/{model}/2", rows, event_time=at[3].isoformat().replace("+00:00", "Z")
            )
    for response in (first, again, routed, live_now):
        assert response.status_code == 200, response.text
    assert again.json()["cached"] is True
    ids = {
        first.json()["request_id"]: at[0],
        again.json()["request_id"]: at[0],
        routed.json()["request_id"]: at[1],
        embedded["request_id"]: at[2],
        over_http["request_id"]: at[3],
    }
    logged = _logged(settings, model, 2 * 6)
    by_id = {row["request_id"]: row for row in logged}
    assert set(ids) | {live_now.json()["request_id"]} == set(by_id)
    for request_id, when in ids.items():
        row = by_id[request_id]
        assert row["ts"] == when, (request_id, row["ts"], when)
        received = json.loads(str(row["extra"]))["received_ms"]
        assert abs(received - time.time() * 1000) < 120_000  # arrived now, logged then
    assert by_id[routed.json()["request_id"]]["deployment"] == name
    live_row = by_id[live_now.json()["request_id"]]
    assert abs(live_row["ts"].timestamp() - time.time()) < 120 and not live_row["extra"]
    # A monitor over the replayed hour counts exactly the replayed predictions of version 1
    with Client(settings=settings) as client:
        client.create_monitor(
            "replayed-hour", model, version="1", window="1h", reference="replay-reference"
        )
        run = client.run_monitor("replayed-hour", window_end=day.replace(hour=11, minute=0))
        v1 = [r for r in ids if by_id[r]["version"] == 1]
        assert run.n_current == 2 * len(v1)
        assert client.run_monitor("replayed-hour").n_current == 2  # the live request only


#: (bad event_time, words its 422 message must contain)
BAD = [
    ("tomorrow", "ISO-8601"),
    ("7d", "absolute"),
    (True, "bool"),
    ({"at": 1}, "dict"),
    (1_700_000_000, "before 2000"),  # epoch seconds where milliseconds are meant
    ("2999-01-01T00:00:00+00:00", "ahead"),
    (10**30, "out of range"),
]


def test_bad_event_time_is_422_naming_it_and_logs_nothing(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    model = unique("replay")
    register(settings, model, churn.small, churn.train[churn.features][:5])
    url = f"/v1/models/{model}/1/predict"
    with live_gateway(settings) as live, httpx.Client(base_url=live.url) as http:
        for event_time, says in BAD:
            answer = http.post(url, json={"instances": churn.rows(1), "event_time": event_time})
            assert answer.status_code == 422, answer.text
            error = answer.json()["error"]
            assert error["field"] == "event_time" and says in error["message"], error
        soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)).isoformat()
        skewed = http.post(url, json={"instances": churn.rows(1), "event_time": soon})
    assert skewed.status_code == 200  # within the allowed clock skew
    assert len(_logged(settings, model, 1)) == 1  # the skewed one only


def test_sdk_refuses_a_future_event_time_on_both_transports(tmp_path: Path, churn: Churn) -> None:
    settings = test_settings(tmp_path)
    model = unique("replay")
    register(settings, model, churn.small, churn.train[churn.features][:5])
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with live_gateway(settings) as live:
        for client in (Client(settings=settings), Client(live.url)):
            with client, pytest.raises(InvalidInput) as caught:
                client.predict(f"models:/{model}/1", churn.rows(1), event_time=later)
            assert caught.value.field == "event_time"
