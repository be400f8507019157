"""The predict routes over real HTTP: a real uvicorn, real LightGBM models, the real registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from tests.serving.conftest import (
    Churn,
    Live,
    live_gateway,
    register,
    set_alias,
    test_settings,
    unique,
)

from keel.config import Settings
from keel.demo.data import TARGET


@pytest.fixture(scope="module")
def served(
    churn: Churn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Live, str, Settings]]:
    """One server for the module: these tests only read (cache counters are compared as deltas)."""
    settings = test_settings(tmp_path_factory.mktemp("served"))
    name = unique("churn")
    example = churn.train[churn.features].head(5)
    register(settings, name, churn.small, example)
    register(settings, name, churn.large, example)
    set_alias(settings, name, "champion", 1)
    with live_gateway(settings) as live:
        yield live, name, settings


def post(live: Live, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{live.url}{path}", json=body, timeout=30, **kwargs)


def test_predict_by_alias_and_version_match_the_model(
    served: tuple[Live, str, Settings], churn: Churn
) -> None:
    live, name, _ = served
    rows = churn.rows(3)
    expected_v1 = churn.small.predict_proba(churn.test[churn.features].head(3))
    expected_v2 = churn.large.predict(churn.test[churn.features].head(3))

    by_alias = post(
        live, f"/v1/models/{name}@champion/predict", {"instances": rows, "probabilities": True}
    )
    assert by_alias.status_code == 200, by_alias.text
    body = by_alias.json()
    assert body["model"] == name and body["version"] == 1
    assert body["cached"] is False and body["fallback"] is False
    assert len(body["request_id"]) == 32
    np.testing.assert_allclose(body["probabilities"], expected_v1, rtol=1e-9)
    assert body["predictions"] == churn.small.predict(churn.test[churn.features].head(3)).tolist()

    columns = churn.features
    split_body = {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    by_version = post(live, f"/v1/models/{name}/2/predict", split_body)
    assert by_version.status_code == 200, by_version.text
    assert by_version.json()["version"] == 2
    assert by_version.json()["predictions"] == expected_v2.tolist()
    assert "probabilities" not in by_version.json()
    assert live.gateway.pool.peek(name, 2).matrix_ok is False  # category columns: a frame
    timing = by_version.headers["server-timing"]
    for stage in ("validation", "cache", "model", "serialisation"):
        assert f"{stage};dur=" in timing


def test_repeated_input_is_answered_from_the_cache(
    served: tuple[Live, str, Settings], churn: Churn
) -> None:
    live, name, _ = served
    rows = churn.rows(2, start=10)
    before = httpx.get(f"{live.url}/v1/serving/status").json()["cache"]
    first = post(live, f"/v1/models/{name}/1/predict", {"instances": rows})
    # same rows, keys in another order and integral floats written as ints: same entries
    reordered = [dict(reversed(list(r.items()))) for r in rows]
    for r in reordered:
        r["tenure"] = int(r["tenure"])
    second = post(live, f"/v1/models/{name}/1/predict", {"instances": reordered})
    assert first.json()["cached"] is False
    assert second.json()["cached"] is True
    assert second.json()["predictions"] == first.json()["predictions"]
    assert second.json()["request_id"] != first.json()["request_id"]
    cache = httpx.get(f"{live.url}/v1/serving/status").json()["cache"]
    assert cache["hits"].get(name, 0) - before["hits"].get(name, 0) == 2
    assert cache["misses"][name] - before["misses"].get(name, 0) == 2
    metrics = httpx.get(f"{live.url}/metrics").text
    assert f'keel_serving_cache_total{{model="{name}",result="hit"}}' in metrics
    assert f'keel_serving_latency_seconds_count{{model="{name}",version="1"}}' in metrics


def _error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


@pytest.mark.parametrize(
    ("mutate", "field", "row", "words"),
    [
        (lambda r: r.update(tenure="twelve"), "tenure", 1, "expects double"),
        (lambda r: r.update(contract=None), "contract", 1, "missing value"),
        (lambda r: r.update(contract=float("nan")), "contract", 1, "missing value"),
        (lambda r: r.pop("monthly_charges"), "monthly_charges", 1, "missing column"),
        (lambda r: r.update(shoe_size=44), "shoe_size", 1, "unexpected column"),
        (lambda r: r.update(partner=True), "partner", 1, "expects double"),
        (lambda r: r.update(contract=["Two year"]), "contract", 1, "expects category"),
    ],
    ids=["string-for-number", "null-category", "nan-category", "missing", "extra", "bool", "list"],
)
def test_bad_instances_get_422_naming_column_and_row(
    served: tuple[Live, str, Settings],
    churn: Churn,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
    row: int,
    words: str,
) -> None:
    live, name, _ = served
    rows = churn.rows(2)
    mutate(rows[1])
    # NaN is not JSON: send the raw text the way Python's json module writes it
    import json

    response = httpx.post(
        f"{live.url}/v1/models/{name}@champion/predict",
        content=json.dumps({"instances": rows}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    error = _error(response)
    assert error["code"] == "invalid_input"
    assert error["field"] == field and error["detail"]["row"] == row
    assert words in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"instances": []}, 422, "instances"),
        ({}, 422, "instances"),
        ({"instances": [1, 2]}, 422, "instances"),
        ({"instances": [{}], "columns": []}, 422, "instances"),
        ({"columns": ["a"], "data": [[1, 2]]}, 422, "data"),
        ({"instances": [{"a": 1}], "probabilities": "yes"}, 422, "probabilities"),
        ({"instances": [{"a": 1}], "limit": 3}, 422, "limit"),
        ([1, 2, 3], 422, "body"),
    ],
    ids=["empty", "no-rows", "not-objects", "both", "ragged", "bad-flag", "unknown", "array"],
)
def test_malformed_bodies_get_4xx(
    served: tuple[Live, str, Settings], body: Any, status: int, field: str
) -> None:
    live, name, _ = served
    response = post(live, f"/v1/models/{name}/1/predict", body)
    assert response.status_code == status, response.text
    assert _error(response)["field"] == field


def test_not_json_is_400_and_ten_megabytes_is_413(served: tuple[Live, str, Settings]) -> None:
    live, name, _ = served
    broken = httpx.post(
        f"{live.url}/v1/models/{name}/1/predict",
        content=b'{"instances": [',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 400 and _error(broken)["field"] == "body"
    huge = httpx.post(
        f"{live.url}/v1/models/{name}/1/predict",
        content=b'{"instances": [' + b" " * (10 * 1024 * 1024) + b"]}",
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert huge.status_code == 413, huge.text
    assert _error(huge)["code"] == "payload_too_large"


def test_chunked_body_over_the_limit_is_413(served: tuple[Live, str, Settings]) -> None:
    live, name, _ = served

    def chunks() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(12):
            yield b" " * (1024 * 1024)
        yield b"]}"

    response = httpx.post(f"{live.url}/v1/models/{name}/1/predict", content=chunks(), timeout=60)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/models/nope@champion/predict", "name"),
        ("/v1/models/{name}@nope/predict", "alias"),
        ("/v1/models/{name}/99/predict", "version"),
        ("/v1/models/nope/1/predict", "name"),
    ],
    ids=["model-by-alias", "alias", "version", "model-by-version"],
)
def test_unknown_model_alias_or_version_is_404(
    served: tuple[Live, str, Settings], churn: Churn, path: str, field: str
) -> None:
    live, name, _ = served
    response = post(live, path.format(name=name), {"instances": churn.rows(1)})
    assert response.status_code == 404, response.text
    assert _error(response)["code"] == "not_found"


def test_served_rows_reach_the_durable_prediction_log(
    served: tuple[Live, str, Settings], churn: Churn
) -> None:
    from keel.serving import predictions

    live, name, settings = served
    rows = churn.rows(3, start=60)
    answer = post(live, f"/v1/models/{name}/2/predict", {"instances": rows}).json()
    assert live.gateway.prediction_log.flush(timeout_s=10)
    logged = predictions(name, 2, settings=settings).to_pylist()
    mine = [r for r in logged if r["request_id"] == answer["request_id"]]
    assert [r["f_tenure"] for r in mine] == [r["tenure"] for r in rows]
    assert [r["cached"] for r in mine] == [False] * 3


def test_probabilities_of_a_regressor_is_422(
    churn: Churn, make_settings: Callable[..., Settings]
) -> None:
    from lightgbm import LGBMRegressor

    settings = make_settings()
    name = unique("charges")
    numeric = ["tenure", "monthly_charges"]
    train = churn.train.dropna(subset=["total_charges"])
    model = LGBMRegressor(n_estimators=10, verbose=-1).fit(train[numeric], train["total_charges"])
    register(settings, name, model, churn.train[numeric].head(3))
    with live_gateway(settings) as live:
        row = {"tenure": 12, "monthly_charges": 70.5}
        ok = post(live, f"/v1/models/{name}/1/predict", {"instances": [row]})
        assert ok.status_code == 200
        expected = model.predict(pd.DataFrame([row], dtype=float))
        # all-float LightGBM inputs skip pandas; the answer is still model.predict(frame)'s
        assert live.gateway.pool.peek(name, 1).matrix_ok is True
        assert ok.json()["predictions"] == expected.tolist()
        bad = post(
            live, f"/v1/models/{name}/1/predict", {"instances": [row], "probabilities": True}
        )
        assert bad.status_code == 422 and _error(bad)["field"] == "probabilities"


def test_server_is_ready_only_after_preloading_and_warm_up(
    churn: Churn, make_settings: Callable[..., Settings]
) -> None:
    name = unique("ready")
    settings = make_settings(serving_preload=f"{name}@champion")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    set_alias(settings, name, "champion", 1)
    # uvicorn accepts connections once the lifespan (which warms the pool) has finished
    with live_gateway(settings) as live:
        assert httpx.get(f"{live.url}/readyz").status_code == 200
        status = httpx.get(f"{live.url}/v1/serving/status").json()
        assert status["ready"] is True and status["preload_errors"] == {}
        [model] = status["models"]
        assert (model["model"], model["version"]) == (name, 1)
        assert model["warmup_ms"] > 0 and model["first_request_ms"] is None
        answer = post(live, f"/v1/models/{name}@champion/predict", {"instances": churn.rows(1)})
        assert answer.status_code == 200
        [model] = httpx.get(f"{live.url}/v1/serving/status").json()["models"]
        assert model["first_request_warm"] is True


def test_a_preload_that_fails_is_reported_not_fatal(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_preload="nowhere@champion")
    with live_gateway(settings) as live:
        status = httpx.get(f"{live.url}/v1/serving/status").json()
        assert "nowhere" in status["preload_errors"]["nowhere@champion"]


def test_a_model_without_signature_is_served_with_the_requests_columns(
    churn: Churn, make_settings: Callable[..., Settings]
) -> None:
    """No signature: rows are taken as sent, the model sees the request's own columns."""
    from sklearn.linear_model import LogisticRegression

    settings = make_settings()
    name = unique("unsigned")
    numeric = ["tenure", "monthly_charges"]
    train = churn.train.dropna(subset=numeric)
    model = LogisticRegression(max_iter=500).fit(train[numeric], train[TARGET])
    register(settings, name, model, None)
    rows = [{"tenure": 3.0, "monthly_charges": 95.5}, {"tenure": 60.0, "monthly_charges": 20.0}]
    with live_gateway(settings) as live:
        answer = post(live, f"/v1/models/{name}/1/predict", {"instances": rows})
        assert answer.status_code == 200, answer.text
        expected = model.predict(pd.DataFrame(rows)).tolist()
        assert answer.json()["predictions"] == expected
        cached = post(live, f"/v1/models/{name}/1/predict", {"instances": rows}).json()
        assert cached["predictions"] == expected and cached["cached"] is True


def test_a_preload_that_fails_to_warm_is_not_ready_and_never_a_500(
    churn: Churn, make_settings: Callable[..., Settings]
) -> None:
    """#15.24: KEEL_MAX_PREDICT_ROWS below the input example's rows fails the warm-up (was:
    the alias route answered 500 AssertionError). /readyz names the failure; the alias is
    then resolved like a cold one, so a request the model can take is answered."""
    name = unique("warmfail")
    settings = make_settings(serving_preload=f"{name}@champion", max_predict_rows=2)
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    set_alias(settings, name, "champion", 1)
    with live_gateway(settings) as live:
        ready = httpx.get(f"{live.url}/readyz")
        assert ready.status_code == 503 and "preload failed" in ready.text
        answer = post(live, f"/v1/models/{name}@champion/predict", {"instances": churn.rows(1)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 1
        too_many = post(live, f"/v1/models/{name}@champion/predict", {"instances": churn.rows(3)})
        assert too_many.status_code == 413 or too_many.status_code == 422, too_many.text
