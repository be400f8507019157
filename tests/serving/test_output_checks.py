"""A model's output must match its input: one prediction per row, the declared output kind.

Issue 15 item 6: a model returning more or fewer outputs than rows was answered 200 with
the output cut short; with micro-batching other callers' rows would be mis-assigned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pandas as pd
import pytest
from serving_faults import Labelling, Miscounting, Overcounting
from tests.serving.conftest import live_gateway, unique

from keel.client import Client
from keel.config import Settings

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})


def _register(settings: Settings, name: str, model: object, **kw: object) -> None:
    with Client(settings=settings) as client, client.start_run("outputs") as run:
        run.log_model(model, registered_name=name, input_example=EXAMPLE, **kw)  # type: ignore[arg-type]


def _rows(n: int, start: int = 0) -> list[dict[str, float]]:
    return [{"a": float(start + i), "b": 1.0} for i in range(n)]


@pytest.mark.parametrize(
    ("model", "returned"), [(Miscounting(), "returned 2 predictions"), (Overcounting(), "4 pre")]
)
def test_wrong_number_of_outputs_is_502_counted_by_the_breaker(
    make_settings: Callable[..., Settings], model: object, returned: str
) -> None:
    settings = make_settings(serving_breaker_min_requests=50, serving_cache=False)
    name = unique("counting")
    _register(settings, name, model)
    with live_gateway(settings) as live:
        response = httpx.post(
            f"{live.url}/v1/models/{name}/1/predict", json={"instances": _rows(3)}, timeout=30
        )
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error["code"] == "model_error"
        assert returned in error["message"] and "for 3 rows" in error["message"]
        assert error["detail"]["expected_rows"] == 3
        assert live.gateway.status()["breakers"][f"{name}/1"]["calls_errors"] == [1, 1]


def test_no_request_gets_another_requests_rows_under_micro_batching(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        serving_breaker_min_requests=10_000, serving_cache=False, serving_batch_max_wait_us=20_000
    )
    name = unique("batched")
    _register(settings, name, Overcounting())

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post(f"/v1/models/{name}/1/predict", json={"instances": _rows(2, 10 * i)})
                    for i in range(24)
                )
            )

    with live_gateway(settings) as live:
        responses = asyncio.run(burst(live.url))
        assert [r.status_code for r in responses] == [502] * 24
        assert max(int(k) for k in live.gateway.status()["batch_rows"][f"{name}/1"]) > 2


def test_output_of_another_kind_than_the_signature_declares_is_502(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_cache=False)
    name = unique("declared")
    signature = {
        "inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}],
        "outputs": [{"name": "score", "type": "double"}],
    }
    _register(settings, name, Labelling(), signature=signature)
    with live_gateway(settings) as live:
        response = httpx.post(
            f"{live.url}/v1/models/{name}/1/predict", json={"instances": _rows(2)}, timeout=30
        )
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert "output 'score' expects double, got 'yes'" in error["message"]
        assert error["detail"]["output"] == "score" and error["detail"]["row"] == 0


def test_probability_rows_and_columns_are_checked() -> None:
    from keel.errors import ModelError
    from keel.serving.outputs import check_outputs

    check_outputs(("m", 1), 2, [0, 1], [[0.4, 0.6], [0.9, 0.1]], classes=[0, 1])
    with pytest.raises(ModelError, match="returned 1 probability rows for 2 rows"):
        check_outputs(("m", 1), 2, [0, 1], [[0.4, 0.6]], classes=[0, 1])
    with pytest.raises(ModelError, match="returned 3 probabilities in row 1 for 2 classes"):
        check_outputs(("m", 1), 2, [0, 1], [[0.4, 0.6], [0.1, 0.1, 0.8]], classes=[0, 1])
