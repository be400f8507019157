"""Repeated cache hits answered by the hit path, over real HTTP, exactly as the full path.

A body answered from the cache once is rendered; the next identical request is served
by :class:`keel.api.hitpath.HitPath` through ``Gateway.answer_cached``. These tests spy
on that method to know which path answered, and check that the hit path's answers,
counters, log rows, rate limit, authentication and invalidations are the full path's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from tests.serving.conftest import Churn, Live, live_gateway, register, set_alias, unique

from keel.config import Settings
from keel.serving.gateway import Gateway
from keel.serving.hits import MEMO_ENTRIES, MEMO_MAX_BODY, HitMemo, render, response_body
from keel.serving.validation import ParsedInput


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each ``answer_cached`` call did: "served", "declined" or the error raised."""
    calls: list[str] = []
    original = Gateway.answer_cached

    def spy(self: Gateway, *args: Any, **kwargs: Any) -> Any:
        try:
            answer = original(self, *args, **kwargs)
        except Exception as exc:
            calls.append(type(exc).__name__)
            raise
        calls.append("declined" if answer is None else "served")
        return answer

    monkeypatch.setattr(Gateway, "answer_cached", spy)
    return calls


@pytest.fixture
def gateway_on(
    churn: Churn, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., tuple[Live, str]]]:
    """Start a live gateway serving ``churn@champion`` (v1 small, v2 large) on demand."""
    with_gateway: list[Any] = []

    def start(**overrides: Any) -> tuple[Live, str]:
        settings = make_settings(**overrides)
        name = unique("hits")
        example = churn.train[churn.features].head(5)
        register(settings, name, churn.small, example)
        register(settings, name, churn.large, example)
        set_alias(settings, name, "champion", 1)
        context = live_gateway(settings.model_copy(update={"serving_preload": f"{name}@champion"}))
        live = context.__enter__()
        with_gateway.append(context)
        return live, name

    yield start
    for context in reversed(with_gateway):
        context.__exit__(None, None, None)


def _post(live: Live, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{live.url}{path}", content=orjson.dumps(body), timeout=30, **kwargs)


def _without_id(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("request_id")
    return body


def test_a_repeated_hit_is_the_full_paths_answer_with_a_new_request_id(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    live, name = gateway_on()
    for probabilities in (False, True):
        body = {"instances": churn.rows(2, start=30), "probabilities": probabilities}
        path = f"/v1/models/{name}@champion/predict"
        first, second, third, fourth = (_post(live, path, body) for _ in range(4))
        assert [r.status_code for r in (first, second, third, fourth)] == [200] * 4
        assert first.json()["cached"] is False
        # the full path answered the first hit (and rendered it); the hit path the rest
        assert answered[-4:] == ["declined", "declined", "served", "served"]
        assert _without_id(second) == _without_id(third) == _without_id(fourth)
        assert _without_id(second) == {**_without_id(first), "cached": True}
        ids = [r.json()["request_id"] for r in (first, second, third, fourth)]
        assert len(set(ids)) == 4 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
        assert ("probabilities" in third.json()) is probabilities
        for response in (second, third):
            assert response.headers["content-type"] == "application/json"
            assert int(response.headers["content-length"]) == len(response.content)
            timing = response.headers["server-timing"]
            for stage in ("validation", "cache", "model", "serialisation"):
                assert f"{stage};dur=" in timing


def test_the_hit_path_never_serves_an_invalidated_expired_or_moved_answer(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    live, name = gateway_on()
    body = {"instances": churn.rows(1, start=40), "probabilities": True}
    path = f"/v1/models/{name}@champion/predict"
    for _ in range(3):
        _post(live, path, body)
    assert answered[-1] == "served"

    # manual invalidation: the next request is computed again, then rendered again
    dropped = httpx.post(f"{live.url}/v1/cache/invalidate", json={"model": name}, timeout=30)
    assert dropped.status_code == 200 and dropped.json()["dropped"] >= 1
    again = _post(live, path, body)
    assert again.json()["cached"] is False and answered[-1] == "declined"
    assert [_post(live, path, body).json()["cached"] for _ in range(2)] == [True, True]
    assert answered[-1] == "served"

    # alias move: version 2 answers; a version 1 answer is never served again
    expected_v2 = churn.large.predict_proba(churn.test[churn.features].iloc[40:41]).tolist()
    set_alias(live.gateway.settings, name, "champion", 2)
    deadline = time.monotonic() + 15
    seen: list[int] = []
    while time.monotonic() < deadline:
        seen.append(_post(live, path, body).json()["version"])
        if seen[-1] == 2:
            break
        time.sleep(0.05)
    assert seen[-1] == 2
    after = [_post(live, path, body).json() for _ in range(3)]
    assert {a["version"] for a in after} == {2}
    assert after[-1]["cached"] is True and answered[-1] == "served"
    assert after[-1]["probabilities"][0] == pytest.approx(expected_v2[0])


def test_an_expired_entry_is_not_served_by_the_hit_path(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    live, name = gateway_on(serving_cache_ttl_s=0.5)
    body = {"instances": churn.rows(1, start=50)}
    path = f"/v1/models/{name}/1/predict"
    assert [_post(live, path, body).json()["cached"] for _ in range(3)] == [False, True, True]
    assert answered[-1] == "served"
    time.sleep(0.7)
    assert _post(live, path, body).json()["cached"] is False
    assert answered[-1] == "declined"


def _series(url: str, prefix: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_hit_path_answers_are_counted_and_logged(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    from keel.serving import predictions

    live, name = gateway_on()
    rows = churn.rows(3, start=70)
    path = f"/v1/models/{name}/1/predict"
    route = 'keel_http_requests_total{method="POST",route="/v1/models/{name}/{version}/predict"'
    http_before = _series(live.url, route + ',status="200"}')
    latency = f'keel_serving_latency_seconds_count{{model="{name}",version="1"}}'
    hits = f'keel_serving_cache_total{{model="{name}",result="hit"}}'
    responses = [_post(live, path, {"instances": rows}) for _ in range(5)]
    assert answered[-3:] == ["served"] * 3
    assert _series(live.url, route + ',status="200"}') - http_before == 5
    assert _series(live.url, latency) == 5
    assert _series(live.url, hits) == 4 * 3
    status = httpx.get(f"{live.url}/v1/serving/status").json()["cache"]
    assert status["hits"][name] == 12 and status["misses"][name] == 3

    assert live.gateway.prediction_log.flush(timeout_s=10)
    logged = predictions(name, 1, settings=live.gateway.settings).to_pylist()
    by_request: dict[str, list[dict[str, Any]]] = {}
    for row in logged:
        by_request.setdefault(row["request_id"], []).append(row)
    for i, response in enumerate(responses):
        mine = by_request[response.json()["request_id"]]
        assert [r["f_tenure"] for r in mine] == [r["tenure"] for r in rows]
        assert [r["cached"] for r in mine] == [i > 0] * 3
        assert [r["output"] for r in mine] == response.json()["predictions"]


def test_the_rate_limit_counts_hit_path_requests(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    live, name = gateway_on(serving_rate_limit="4/minute")
    body = {"instances": churn.rows(1, start=80)}
    path = f"/v1/models/{name}@champion/predict"
    statuses = [_post(live, path, body) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 200, 429, 429]
    assert answered[-4:] == ["served", "served", "RateLimited", "RateLimited"]
    limited = statuses[-1]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["field"] == "client"
    route = 'keel_http_requests_total{method="POST",route="/v1/models/{name}@{alias}/predict"'
    assert _series(live.url, route + ',status="429"}') == 2
    # another client has its own budget, also on the hit path
    other = _post(live, path, body, headers={"x-keel-client": "batch-job"})
    assert other.status_code == 200 and answered[-1] == "served"


def test_bodies_the_hit_path_cannot_take_go_the_full_way(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    live, name = gateway_on(serving_max_body_bytes=64 * 1024)
    path = f"/v1/models/{name}/1/predict"
    body = orjson.dumps({"instances": churn.rows(1, start=90)})
    for _ in range(3):
        assert httpx.post(f"{live.url}{path}", content=body, timeout=30).status_code == 200
    assert answered[-1] == "served"
    calls = len(answered)

    def chunks() -> Iterator[bytes]:  # no Content-Length: streamed, counted by the front door
        yield body[:10]
        yield body[10:]

    streamed = httpx.post(f"{live.url}{path}", content=chunks(), timeout=30)
    assert streamed.status_code == 200 and streamed.json()["cached"] is True
    too_large = httpx.post(f"{live.url}{path}", content=b" " * (64 * 1024 + 1), timeout=30)
    assert too_large.status_code == 413
    assert len(answered) == calls  # neither came to the hit path: the front door answered
    not_a_number = httpx.post(f"{live.url}/v1/models/{name}/x1/predict", content=body, timeout=30)
    assert not_a_number.status_code == 422


def test_with_auth_on_only_cached_principals_take_the_hit_path(
    gateway_on: Callable[..., tuple[Live, str]], churn: Churn, answered: list[str]
) -> None:
    live, name = gateway_on(auth="on")
    auth = live.app.state.services.auth
    auth.create_user("reader", "viewer")
    token = auth.create_token("reader")
    headers = {"authorization": f"Bearer {token.token}"}
    path = f"/v1/models/{name}@champion/predict"
    body = {"instances": churn.rows(1, start=100)}
    answers = [_post(live, path, body, headers=headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert answered[-1] == "served"
    calls = len(answered)
    assert _post(live, path, body).status_code == 401
    wrong = {"authorization": "Bearer keel_nope_nope"}
    assert _post(live, path, body, headers=wrong).status_code == 401
    assert len(answered) == calls  # denials never reached the gateway
    auth.revoke_token(token.id)
    revoked = _post(live, path, body, headers=headers)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error"]["message"]


# --------------------------------------------------------------------------- rendering
def _parsed(probabilities: bool) -> ParsedInput:
    return ParsedInput([(1.0,)], [b"k"], ["x"], probabilities, None)


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize(
    "rows",
    [
        [(1, [0.25, 0.75])],
        [("0" * 32, None), ("1" * 40, None)],  # predictions that look like request ids
        [(float("nan"), [float("inf"), 0.5])],  # JSON has no NaN: null, as the full path
        [('quote " and \\ slash', None)],
    ],
)
def test_rendered_answers_are_the_serialised_response(rows: list[Any], probabilities: bool) -> None:
    from keel.serving import _json

    parsed = _parsed(probabilities)
    rendered = render("m", 3, parsed, rows)
    request_id = "ab" * 16
    expected = response_body(
        [r[0] for r in rows],
        "m",
        3,
        request_id,
        cached=True,
        fallback=False,
        probabilities=[r[1] for r in rows] if probabilities else None,
    )
    assert rendered.payload(request_id.encode()) == _json.dumps(expected)
    assert rendered.current(list(rows)) and rendered.current([tuple(r) for r in rows])
    assert not rendered.current([None] * len(rows))
    assert not rendered.current([(r[0], "other") for r in rows])


def test_the_memo_is_bounded_and_skips_large_bodies() -> None:
    memo = HitMemo()
    rendered = render("m", 1, _parsed(False), [(1, None)])
    memo.remember(b"x" * (MEMO_MAX_BODY + 1), rendered)
    assert len(memo) == 0
    for i in range(MEMO_ENTRIES + 5):
        memo.remember(b"%d" % i, rendered)
    assert len(memo) == MEMO_ENTRIES
    assert memo.get(b"0") is None and memo.get(b"%d" % (MEMO_ENTRIES + 4)) is rendered


def test_gateways_shorten_the_switch_interval_while_they_run(
    make_settings: Callable[..., Settings],
) -> None:
    import sys

    before = sys.getswitchinterval()
    with live_gateway(make_settings(serving_switch_interval_ms=0.5)):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        with live_gateway(make_settings(serving_switch_interval_ms=2)):
            assert sys.getswitchinterval() == pytest.approx(0.0005)  # the shorter stands
        assert sys.getswitchinterval() == pytest.approx(0.0005)  # the first still runs
    assert sys.getswitchinterval() == pytest.approx(before)
    with live_gateway(make_settings(serving_switch_interval_ms=0)):
        assert sys.getswitchinterval() == pytest.approx(before)  # 0: left alone
