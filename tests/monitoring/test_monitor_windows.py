"""Past windows (#15.19), monitors refused at creation (#15.22) and SDK edges (#15.23),
through the SDK on both transports, REST and the CLI."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.monitoring.conftest import NOW_MS, serve_rows
from typer.testing import CliRunner

from keel import Client
from keel.cli.main import app
from keel.demo.data import TARGET
from keel.errors import InvalidInput, NotFound
from keel.services import Services
from keel.serving.predlog import log_root

# serve_rows logs row i at NOW_MS - 3,000 s + i s: a window ending 200 s after the first
# row holds exactly 200 rows, one ending before it holds none.
FIRST_MS = NOW_MS - 3_000_000
END_200 = FIRST_MS + 200_000


@pytest.fixture
def served(
    client: Client, services: Services, churn: tuple[pd.DataFrame, pd.DataFrame], churn_model: Any
) -> tuple[Client, list[str], pd.DataFrame]:
    rows = churn[1].head(400)
    ids = serve_rows(churn_model, rows, log_root(services.settings))
    return client, ids, rows


def test_run_monitor_over_a_past_window(served: tuple) -> None:
    client, ids, rows = served
    labels = [{"request_id": i, "label": int(y)} for i, y in zip(ids, rows[TARGET], strict=True)]
    client.log_feedback(labels)
    client.create_monitor("past", "churn", window="2h", task="classification", label_column=TARGET)
    end = dt.datetime.fromtimestamp(END_200 / 1000, tz=dt.UTC)
    run = client.run_monitor("past", window_end=end)
    assert (run.window_end_ms, run.n_current, run.n_labelled) == (END_200, 200, 200)
    assert run.window_start_ms == END_200 - 7_200_000
    client.create_monitor("drift-only", "churn", window="2h")
    assert client.run_monitor("drift-only", window_end=FIRST_MS).n_current == 0
    assert client.run_monitor("past").n_current == 400  # default: the window ending now
    # Labels as known before any was sent: none counts.
    early = client.run_monitor("past", window_end=END_200, as_of=FIRST_MS)
    assert (early.n_current, early.n_labelled) == (200, 0)


def test_window_end_refused_in_the_future_or_malformed(served: tuple) -> None:
    client, *_ = served
    client.create_monitor("w", "churn", window="1w")  # "w" is a unit now (#15.22)
    for bad in ("2999-01-01", "tomorrow"):
        with pytest.raises(InvalidInput) as caught:
            client.run_monitor("w", window_end=bad)
        assert caught.value.field == "window_end"
    with pytest.raises(InvalidInput) as caught:
        client.run_monitor("w", as_of="yesterday")
    assert caught.value.field == "as_of"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"features": ["tenure", "tenur"]}, "features"),
        ({"label_column": "churned"}, "label_column"),
        ({"slices": ["region"]}, "slices"),
        ({"overrides": {"plan": {"test": "ks"}}}, "overrides"),
        ({"window": "7 days"}, "window"),
        ({"window": "0s"}, "window"),
    ],
)
def test_create_monitor_refuses_what_a_run_could_never_find(
    served: tuple, fields: dict[str, Any], field: str
) -> None:
    client, *_ = served
    with pytest.raises(InvalidInput) as caught:
        client.create_monitor("bad", "churn", task="classification", **fields)
    assert caught.value.field == field, caught.value.message
    with pytest.raises(NotFound):
        client.get_monitor("bad")


def test_create_monitor_accepts_logged_slices_and_reference_columns(served: tuple) -> None:
    client, *_ = served
    made = client.create_monitor(
        "ok", "churn", features=["tenure"], label_column=TARGET, slices=["contract", "arm"]
    )
    assert made.slices == ["contract", "arm"]


def test_diagnosis_names_slice_by_and_the_unknown_monitor(served: tuple) -> None:
    client, *_ = served
    client.create_monitor("diag", "churn", window="2h")
    run = client.run_monitor("diag")
    with pytest.raises(InvalidInput) as caught:
        client.diagnose_monitor_run("diag", run.id, slice_by=["tenure", "contrakt"])
    assert caught.value.field == "slice_by" and "contrakt" in caught.value.message
    assert client.diagnose_monitor_run("diag", run.id, slice_by=["tenure"])["slices"] is not None
    with pytest.raises(NotFound) as missing:
        client.diagnose_monitor_run("nosuch", run.id)
    assert missing.value.field == "name" and "nosuch" in missing.value.message


def test_log_feedback_of_nothing_is_a_no_op(client: Client) -> None:
    assert client.log_feedback([]) == {
        "accepted": 0,
        "duplicates": 0,
        "unknown": 0,
        "unknown_examples": [],
    }


def test_rest_window_end_and_creation_errors(
    services: Services, live_server: str, churn: tuple, churn_model: Any
) -> None:
    serve_rows(churn_model, churn[1].head(400), log_root(services.settings))
    with httpx.Client(base_url=live_server, timeout=60) as http:
        bad = http.post("/v1/monitors", json={"name": "m", "model": "churn", "slices": ["x"]})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "slices", bad.text
        made = http.post("/v1/monitors", json={"name": "m", "model": "churn", "window": "2h"})
        assert made.status_code == 201, made.text
        run = http.post("/v1/monitors/m/run", params={"window_end": END_200})
        assert run.status_code == 200, run.text
        assert (run.json()["window_end_ms"], run.json()["n_current"]) == (END_200, 200)
        iso = dt.datetime.fromtimestamp(END_200 / 1000, tz=dt.UTC).isoformat()
        assert (
            http.post("/v1/monitors/m/run", params={"window_end": iso}).json()["n_current"] == 200
        )
        future = http.post("/v1/monitors/m/run", params={"window_end": "2999-01-01"})
        assert future.status_code == 422 and future.json()["error"]["field"] == "window_end"
        assert http.post("/v1/feedback", json={"items": []}).json()["accepted"] == 0
        diag = http.get(f"/v1/monitors/nosuch/runs/{run.json()['id']}/diagnosis")
        assert diag.status_code == 404 and diag.json()["error"]["field"] == "name"


def test_cli_window_end(
    services: Services, churn: tuple, churn_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_rows(churn_model, churn[1].head(400), log_root(services.settings))
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    runner = CliRunner()
    made = runner.invoke(app, ["monitor", "create", "c", "--model", "churn", "--window", "2h"])
    assert made.exit_code == 0, made.output
    iso = dt.datetime.fromtimestamp(END_200 / 1000, tz=dt.UTC).isoformat()
    result = runner.invoke(app, ["monitor", "run", "c", "--window-end", iso, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_current"] == 200
    bad = runner.invoke(app, ["monitor", "run", "c", "--window-end", "soon"])
    assert bad.exit_code == 2 and "window_end" in bad.output
