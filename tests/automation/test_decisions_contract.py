"""The decision log's record contract: every JSON record, over REST, the SDK (both
transports) and ``keel decisions --json``, carries ``time`` (ISO-8601 UTC), ``model``,
``kind`` and ``summary``, and the same ``time`` everywhere (``at_ms`` kept beside it)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel import Client
from keel.api.app import create_app
from keel.cli.main import app
from keel.config import Settings
from keel.services import Services, open_services

AT_MS = 1_796_000_000_123  # 2026-11-30T00:53:20.123Z: the milliseconds must survive
CONTRACT = {"time", "model", "kind", "summary", "at_ms"}


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[Services, Settings]]:
    settings = Settings(home=tmp_path / "keel")
    services = open_services(settings)
    services.decisions.record("retraining", "churn", "retrained on 7d", {"rows": 10}, at_ms=AT_MS)
    services.decisions.record("gate", "churn", "margin failed", {"passed": False})
    yield services, settings
    services.close()


def _expected_time(at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC).isoformat()


def _check(records: list[dict[str, object]]) -> None:
    assert len(records) == 2
    for record in records:
        assert CONTRACT <= record.keys(), record
        assert record["time"] == _expected_time(int(str(record["at_ms"])))
        assert dt.datetime.fromisoformat(str(record["time"])).utcoffset() == dt.timedelta(0)
    oldest = records[-1]
    assert oldest["time"] == "2026-11-30T00:53:20.123000+00:00"
    assert oldest["kind"] == "retraining" and oldest["summary"] == "retrained on 7d"


def test_rest_sdk_and_cli_records_carry_the_contract(
    logged: tuple[Services, Settings],
) -> None:
    services, settings = logged
    with serve_in_thread(create_app(services=services)) as url:
        with httpx.Client(base_url=url) as http:
            response = http.get("/v1/decisions", params={"model": "churn"})
        assert response.status_code == 200, response.text
        _check(response.json())
        # the HTTP SDK reads records that carry ``time`` back into the strict entity
        with Client(url, settings=settings.model_copy(update={"home": settings.home / "r"})) as sdk:
            remote = [d.model_dump(mode="json") for d in sdk.decisions(model="churn")]
    _check(remote)
    with Client(settings=settings) as sdk:
        local = [d.model_dump(mode="json") for d in sdk.decisions(model="churn")]
    _check(local)
    assert local == remote
    env = {"KEEL_HOME": str(settings.home), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    result = CliRunner().invoke(app, ["decisions", "--model", "churn", "--json"], env=env)
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    _check(cli)
    assert cli == local
