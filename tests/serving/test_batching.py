"""Micro-batching under concurrent load: rows coalesce, and each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.serving.conftest import Churn, live_gateway, register, unique

from keel.config import Settings


async def _fire(url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(
            *(client.post(url, json={"instances": [row], "probabilities": True}) for row in rows)
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses][:3]
    return [r.json() for r in responses]


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "off"])
def test_concurrent_single_rows_coalesce_and_keep_their_own_answers(
    churn: Churn, make_settings: Callable[..., Settings], batching: bool
) -> None:
    settings = make_settings(
        serving_cache=False, serving_batching=batching, serving_batch_max_wait_us=2000
    )
    name = unique("batched")
    register(settings, name, churn.small, churn.train[churn.features].head(5))
    n = 48 if batching else 16  # without batching every row is its own (slow) call
    rows = churn.rows(n)
    expected = churn.small.predict_proba(churn.test[churn.features].head(n))[:, 1]
    with live_gateway(settings) as live:
        path = f"{live.url}/v1/models/{name}/1/predict"
        answers = asyncio.run(_fire(path, rows)) + asyncio.run(_fire(path, rows))
        sizes = live.gateway.status()["batch_rows"]
    for i, answer in enumerate(answers):
        assert answer["probabilities"][0][1] == pytest.approx(expected[i % n], rel=1e-9)
    if batching:
        batches = {int(size): count for size, count in sizes[f"{name}/1"].items()}
        assert sum(size * count for size, count in batches.items()) == 2 * n
        assert max(batches) > 1, batches  # at least one call predicted several requests
        assert sum(batches.values()) < 2 * n
    else:
        assert sizes == {}
