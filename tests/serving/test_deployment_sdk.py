"""``Client.predict`` on both transports: a deployment by name (sticky ``routing_key``) or a
``models:/`` reference, the same answers and the same errors embedded and over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serving.conftest import Churn, live_gateway, register, set_alias, test_settings, unique

from keel.client import Client
from keel.config import Settings
from keel.errors import InvalidInput, NotFound


@pytest.fixture
def served(tmp_path: Path, churn: Churn) -> Iterator[tuple[Settings, str, str, str]]:
    """Settings, a live server's URL, the model (v1 champion, v2) and an A/B deployment."""
    settings = test_settings(tmp_path)
    model, name = unique("dep"), unique("live")
    example = churn.train[churn.features][:5]
    register(settings, model, churn.small, example)
    register(settings, model, churn.large, example)
    set_alias(settings, model, "champion", 1)
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
    with live_gateway(settings) as live:
        yield settings, live.url, model, name


def test_predict_through_a_deployment_is_sticky_on_both_transports(
    served: tuple[Settings, str, str, str], churn: Churn
) -> None:
    settings, url, _, name = served
    rows = churn.rows(2)
    keys = [f"customer-{i}" for i in range(30)]
    with Client(settings=settings) as local, Client(url) as remote:
        embedded = [local.predict(name, rows, routing_key=k) for k in keys]
        over_http = [remote.predict(name, rows, routing_key=k) for k in keys]
    assert [a["arm"] for a in embedded] == [a["arm"] for a in over_http]
    assert {a["arm"] for a in embedded} == {"primary", "challenger"}
    for answer in embedded + over_http:
        assert answer["deployment"] == name and len(answer["predictions"]) == 2
        assert answer["version"] == {"primary": 1, "challenger": 2}[answer["arm"]]


def test_predict_with_model_references_on_both_transports(
    served: tuple[Settings, str, str, str], churn: Churn
) -> None:
    settings, url, model, _ = served
    frame = churn.test[churn.features].iloc[:3]
    with Client(settings=settings) as local, Client(url) as remote:
        for client in (local, remote):
            champion = client.predict(f"models:/{model}@champion", frame, probabilities=True)
            assert champion["version"] == 1 and "arm" not in champion
            expected = churn.small.predict_proba(frame)[:, 1]
            assert [p[1] for p in champion["probabilities"]] == pytest.approx(list(expected))
            assert client.predict(f"models:/{model}/2", churn.rows(1))["version"] == 2


@pytest.mark.parametrize(
    ("ref", "options", "error", "field"),
    [
        ("models:/{model}@champion", {"routing_key": "u"}, InvalidInput, "routing_key"),
        ("models:/{model}", {}, InvalidInput, "ref"),
        ("", {}, InvalidInput, "ref"),
        ("nobody", {}, NotFound, "name"),
        ("{name}", {"routing_key": ""}, InvalidInput, "routing_key"),
    ],
)
def test_predict_errors_are_the_same_on_both_transports(
    served: tuple[Settings, str, str, str],
    churn: Churn,
    ref: str,
    options: dict[str, str],
    error: type[Exception],
    field: str,
) -> None:
    settings, url, model, name = served
    with Client(settings=settings) as local, Client(url) as remote:
        for client in (local, remote):
            with pytest.raises(error) as caught:
                client.predict(ref.format(model=model, name=name), churn.rows(1), **options)
            assert caught.value.field == field  # type: ignore[attr-defined]
