"""Group commit of the prediction log (``KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0``, #15.11)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
from pydantic import ValidationError
from serving_faults import Switchable
from tests.serving.conftest import live_gateway, register, unique

from keel.config import Settings
from keel.errors import InvalidInput, Unavailable
from keel.services import open_services
from keel.serving import PredictionLog, predictions
from keel.serving.gateway import Gateway, Target
from keel.serving.records import ServedRequest

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})


def _request(i: int) -> ServedRequest:
    return ServedRequest(
        f"r{i}",
        int(time.time() * 1000),
        "churn",
        1,
        ("x",),
        [(float(i),)],
        [i % 2],
        None,
        [False],
        False,
        0.5,
    )


def test_concurrent_durable_appends_share_writes_and_are_on_disk_when_told(
    tmp_path: Path,
) -> None:
    async def serve(log: PredictionLog) -> list[bool]:
        async def one(i: int) -> bool:
            written = await log.append_durable(_request(i)).wait_async()
            if i % 30 == 0:  # told "written": on disk already, before any flush or close
                logged = predictions("churn", 1, root=tmp_path).column("request_id").to_pylist()
                assert f"r{i}" in logged
            return written

        return await asyncio.gather(*(one(i) for i in range(300)))

    log = PredictionLog(tmp_path, flush_interval_s=0, fsync=True)
    try:
        assert log.group_commit
        assert asyncio.run(serve(log)) == [True] * 300
        segments = log.stats.segments
    finally:
        log.close()
    assert log.stats.written == 300
    assert segments < 300 / 2, f"{segments} writes for 300 requests: no grouping"


def test_a_refused_or_failed_durable_append_is_told_not_written(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "model=churn").parent.mkdir()
    (blocked / "model=churn").write_text("a file where the partition directory goes")
    with PredictionLog(blocked, flush_interval_s=0) as failing:
        assert failing.append_durable(_request(1)).wait(10) is False
    assert failing.stats.failed == 1
    log = PredictionLog(tmp_path / "ok", flush_interval_s=0)
    log.close()
    refused = log.append_durable(_request(2))
    assert refused.ok is False and refused.wait(0) is False
    assert log.append_durable("not a request").ok is False  # type: ignore[arg-type]


def test_flush_interval_bounds_name_the_setting() -> None:
    assert Settings(prediction_log_flush_interval_s=0).prediction_log_flush_interval_s == 0
    with pytest.raises(ValidationError, match="prediction_log_flush_interval_s"):
        Settings(prediction_log_flush_interval_s=-0.1)
    with pytest.raises(InvalidInput, match="flush_interval_s"):
        PredictionLog(Path("unused"), flush_interval_s=61)


def test_with_group_commit_an_answer_is_logged_before_it_is_given(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(prediction_log_flush_interval_s=0)
    name = unique("durable")
    register(settings, name, Switchable(), EXAMPLE)
    with live_gateway(settings) as live:
        url = f"{live.url}/v1/models/{name}/1/predict"
        for row in ({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}):
            answer = httpx.post(url, json={"instances": [row]}, timeout=30)
            assert answer.status_code == 200, answer.text
            logged = predictions(name, 1, settings=settings).column("request_id").to_pylist()
            assert answer.json()["request_id"] in logged  # read at once: no flush, no close


def test_with_group_commit_an_answer_the_log_cannot_write_is_503(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    blocked = tmp_path / "log"
    settings = make_settings(prediction_log_flush_interval_s=0, prediction_log_dir=blocked)
    name = unique("unlogged")
    register(settings, name, Switchable(), EXAMPLE)
    blocked.mkdir(parents=True)
    (blocked / f"model={name}").write_text("a file where the partition directory goes")
    with live_gateway(settings) as live:
        answer = httpx.post(
            f"{live.url}/v1/models/{name}/1/predict", json={"instances": [{"a": 1.0, "b": 2.0}]}
        )
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unavailable" and error["field"] == "prediction_log"
    assert answer.headers["retry-after"] == "1"


def test_with_group_commit_a_gateway_without_its_log_gives_no_answer(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(prediction_log_flush_interval_s=0)
    name = unique("nolog")
    register(settings, name, Switchable(), EXAMPLE)
    services = open_services(settings)

    async def answer() -> None:
        gateway = Gateway(settings, services.registry, prediction_log=None)  # failed to open
        await gateway.start()
        try:
            await gateway.predict(
                Target(name, 1), b'{"instances": [{"a": 1, "b": 2}]}', client_key="t"
            )
        finally:
            await gateway.close()

    try:
        with pytest.raises(Unavailable, match="prediction log"):
            asyncio.run(answer())
    finally:
        services.close()
