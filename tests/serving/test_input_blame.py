"""One client's bad rows are that client's 422, not a model failure that opens the breaker.

Issue 15 item 7: eight requests with NaN in a column a LogisticRegression cannot take
opened the breaker, and every other client's valid rows got 503. Real data (the telco
churn table), a real scikit-learn model, a live server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.serving.conftest import live_gateway, unique

from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn

FEATURES = ["tenure", "monthly_charges", "senior_citizen", "partner"]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, LogisticRegression]:
    frame = load_churn().dropna(subset=FEATURES).head(1500)
    model = LogisticRegression(max_iter=500).fit(frame[FEATURES], frame[TARGET])
    return frame, model


def _register(settings: Settings, name: str, model: Any, example: Any, **kw: Any) -> None:
    with Client(settings=settings) as client, client.start_run("blame") as run:
        run.log_model(model, registered_name=name, input_example=example, **kw)


def _rows(frame: pd.DataFrame, n: int, start: int = 0) -> list[dict[str, float]]:
    return [
        {k: float(v) for k, v in r.items()}
        for r in frame[FEATURES].iloc[start : start + n].to_dict("records")
    ]


def _settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        serving_cache=False, serving_breaker_min_requests=4, serving_batch_max_wait_us=20_000
    )


def test_nan_where_the_model_takes_none_is_422_and_the_breaker_stays_closed(
    make_settings: Callable[..., Settings], data: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    frame, model = data
    settings = _settings(make_settings)
    name = unique("lr-nan")
    _register(settings, name, model, frame[FEATURES].head(5))
    with Client(settings=settings) as client:
        inputs = client.get_model_version(name, 1).signature["inputs"]  # type: ignore[index]
    assert {c["name"]: c.get("accepts_nan") for c in inputs}["tenure"] is False
    with live_gateway(settings) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        bad = _rows(frame, 2)
        bad[1]["tenure"] = None
        for _ in range(8):
            response = http.post(f"/v1/models/{name}/1/predict", json={"instances": bad})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["field"] == "tenure" and error["detail"]["row"] == 1
            assert "instances[1].tenure" in error["message"]
        good = http.post(f"/v1/models/{name}/1/predict", json={"instances": _rows(frame, 3)})
        assert good.status_code == 200, good.text
        breaker = live.gateway.status()["breakers"][f"{name}/1"]
        assert breaker == {"state": "closed", "calls_errors": [1, 0]}


def test_a_batch_with_one_clients_bad_rows_answers_every_other_client(
    make_settings: Callable[..., Settings], data: tuple[pd.DataFrame, LogisticRegression]
) -> None:
    frame, model = data
    settings = _settings(make_settings)
    name = unique("lr-batch")
    # A hand-written signature does not say which columns take NaN: the model decides.
    signature = {"inputs": [{"name": f, "type": "double"} for f in FEATURES]}
    _register(settings, name, model, frame[FEATURES].head(5), signature=signature)
    expected = model.predict(frame[FEATURES].head(48)).tolist()

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            bodies = []
            for i in range(24):
                rows = _rows(frame, 2, 2 * i)
                if i % 3 == 0:
                    rows[0]["monthly_charges"] = float("nan")
                bodies.append({"instances": rows})
            return await asyncio.gather(
                *(http.post(f"/v1/models/{name}/1/predict", content=_dump(b)) for b in bodies)
            )

    with live_gateway(settings) as live:
        for _ in range(2):
            responses = asyncio.run(burst(live.url))
            for i, response in enumerate(responses):
                if i % 3 == 0:
                    assert response.status_code == 422, response.text
                    error = response.json()["error"]
                    assert error["field"] == "instances"
                    assert error["detail"]["error_class"] == "ValueError"
                    assert "NaN" in error["message"]
                else:
                    assert response.status_code == 200, response.text
                    assert response.json()["predictions"] == expected[2 * i : 2 * i + 2]
        status = live.gateway.status()
        assert max(int(k) for k in status["batch_rows"][f"{name}/1"]) > 2  # really batched
        assert status["breakers"][f"{name}/1"]["state"] == "closed"
        assert status["breakers"][f"{name}/1"]["calls_errors"][1] == 0


def _dump(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()  # NaN as a bare token, as the API accepts
