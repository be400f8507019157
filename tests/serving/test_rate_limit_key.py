"""Whom the rate limit counts: principal, customer header, address (#15.12), over a real server."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pandas as pd
import pytest
from pydantic import ValidationError
from serving_faults import Switchable
from tests.serving.conftest import live_gateway, register, unique

from keel.config import Settings
from keel.serving.ratelimit import client_key

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})


def _statuses(url: str, n: int, *, source: str = "127.0.0.1", **headers: str) -> list[int]:
    """``n`` predictions from ``source``: the same body (hit path after the first) and a
    new one each time (the full path), alternately."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as http:
        return [
            http.post(
                url, json={"instances": [{"a": 1.0, "b": float(i % 2 and i)}]}, headers=headers
            ).status_code
            for i in range(n)
        ]


def test_customers_behind_one_address_each_get_their_own_budget(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        serving_rate_limit="3/minute", serving_rate_limit_key_header="X-Customer-Id"
    )
    name = unique("customers")
    register(settings, name, Switchable(), EXAMPLE)
    with live_gateway(settings) as live:
        url = f"{live.url}/v1/models/{name}/1/predict"
        assert _statuses(url, 4, **{"X-Customer-Id": "acme"}) == [200, 200, 200, 429]
        assert _statuses(url, 3, **{"X-Customer-Id": "globex"}) == [200, 200, 200]
        # no customer named: the address is the key; another header name is ignored
        assert _statuses(url, 2) == [200, 200]
        assert _statuses(url, 2, **{"X-Keel-Client": "evasive"}) == [200, 429]


def test_a_tokens_budget_follows_its_principal_and_splits_by_customer(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_rate_limit="3/minute")
    name = unique("principal")
    register(settings, name, Switchable(), EXAMPLE)
    with live_gateway(settings.model_copy(update={"auth": "on"})) as live:
        auth = live.app.state.services.auth
        auth.create_user("svc", "viewer")
        auth.create_user("other", "viewer")
        first, second = auth.create_token("svc").token, auth.create_token("svc").token
        other = auth.create_token("other").token
        url = f"{live.url}/v1/models/{name}/1/predict"

        def bearer(token: str, **more: str) -> dict[str, str]:
            return {"authorization": f"Bearer {token}", **more}

        # one upstream service, one token, two customers: a budget each
        assert _statuses(url, 4, **bearer(first, **{"X-Keel-Client": "a"})) == [200] * 3 + [429]
        assert _statuses(url, 3, **bearer(first, **{"X-Keel-Client": "b"})) == [200] * 3
        # another principal naming customer "a" has its own budget, not svc's
        assert _statuses(url, 1, **bearer(other, **{"X-Keel-Client": "a"})) == [200]
        # without a customer: the user's budget, whichever token and address it comes from
        assert _statuses(url, 2, **bearer(first)) == [200, 200]
        assert _statuses(url, 2, source="127.0.0.2", **bearer(second)) == [200, 429]
        assert _statuses(url, 1, source="127.0.0.3") == [401]


def test_client_key_parts() -> None:
    assert client_key("svc", None, ("10.0.0.1", 5)) == "user:svc"
    assert client_key("svc", b"acme", None) == "user:svc|customer:acme"
    assert client_key(None, b"acme", ("10.0.0.1", 5)) == "customer:acme"
    assert client_key(None, b"", ("10.0.0.1", 5)) == "ip:10.0.0.1"
    assert client_key(None, None, None) == "ip:unknown"
    assert client_key(None, b"x" * 1000, None) == "customer:" + "x" * 200


@pytest.mark.parametrize("header", ["X Customer", "X-Customer:", "é", "x" * 65])
def test_the_key_header_setting_must_be_a_header_name(header: str) -> None:
    with pytest.raises(ValidationError, match="serving_rate_limit_key_header"):
        Settings(serving_rate_limit_key_header=header)
