"""A number no column can hold is a 422 naming its field, never a 5xx.

The rule (docs/api.md, Errors): a version number or a record id outside 1..2^31−1
(INTEGER columns, 32 bits on PostgreSQL) and a time in ms outside 0..2^63−1 (BIGINT) is
``invalid_input`` naming the field, on SQLite and PostgreSQL, embedded and over HTTP —
before this, PostgreSQL's driver refused ``get_model_version("churn", 2**40)`` with
NumericValueOutOfRange, a 500, and SQLite answered 404 or overflowed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

import keel
from keel.auth.models import AuditQuery
from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.services import Services
from keel.tracking.models import RunInput

#: Beyond INTEGER, beyond BIGINT both ways, beyond 64 bits, and a float no int can be.
HUGE: list[Any] = [2**31, 2**63, 2**64, -(2**63) - 1, 1e308]
#: Those a BIGINT column (a time in ms, a row count) cannot hold either.
BEYOND_BIGINT = HUGE[1:]


def _refused(call: Callable[[Any], object], field: str, values: list[Any] = HUGE) -> None:
    """Each of ``values`` given to ``call`` raises InvalidInput naming ``field``."""
    for value in values:
        with pytest.raises(keel.InvalidInput) as info:
            call(value)
        assert info.value.field == field, (value, info.value.field, info.value.message)
        assert info.value.message.startswith(f"{field}: "), (value, info.value.message)


def test_model_version_out_of_range_is_invalid(client: Client) -> None:
    client.create_model("churn")
    _refused(lambda v: client.get_model_version("churn", v), "version")
    _refused(lambda v: client.update_model_version("churn", v, description="d"), "version")
    _refused(lambda v: client.archive_model_version("churn", v), "version")
    _refused(lambda v: client.set_alias("churn", "champion", v), "version")
    _refused(lambda v: client.lineage("churn", v), "version")
    assert client.alias_history("churn") == []


def test_model_ref_version_out_of_range_is_invalid(client: Client) -> None:
    client.create_model("churn")
    for value in [2**31, 2**63, 2**64]:
        with pytest.raises(keel.InvalidInput, match="version") as info:
            client.resolve(f"models:/churn/{value}")
        assert info.value.field == "model"


def test_decision_id_out_of_range_is_invalid(client: Client) -> None:
    _refused(client.decision, "decision_id")
    _refused(lambda v: client.resolve_decision(v, no_check_reason="x"), "decision_id")


def test_dataset_version_out_of_range_is_invalid(client: Client) -> None:
    client.register_dataset("d", pd.DataFrame({"a": [1, 2, 3]}))
    _refused(lambda v: client.get_dataset("d", v), "version")


def test_gate_decision_version_out_of_range_is_invalid(services: Services) -> None:
    from keel.automation.gates.decision import record_gate_decision

    services.registry.create_model("churn")
    svc = services
    _refused(
        lambda v: record_gate_decision(
            svc.tracking, svc.registry, svc.decisions, "churn", v, "r", "a"
        ),
        "version",
    )


@pytest.mark.parametrize("value", HUGE)
def test_run_input_and_audit_numbers_out_of_range_are_invalid(value: Any) -> None:
    # the SDK and POST /v1/runs/{id}/inputs build RunInput; the SDK and GET /v1/audit AuditQuery
    item = {"name": "d", "content_hash": "a" * 64}
    with pytest.raises(ValueError, match="dataset_version"):
        RunInput.model_validate({**item, "dataset_version": value})
    if value in BEYOND_BIGINT:  # row_count and since_ms are BIGINT columns: 2**31 fits
        with pytest.raises(ValueError, match="row_count"):
            RunInput.model_validate({**item, "row_count": value})
        with pytest.raises(ValueError, match="since_ms"):
            AuditQuery(since_ms=value)
    else:
        assert RunInput.model_validate({**item, "row_count": value}).row_count == value


def test_routes_answer_422_naming_the_field(services: Services, live_server: str) -> None:
    services.registry.create_model("churn")
    run = services.tracking.create_run("e")
    item = {"name": "d", "content_hash": "a" * 64}
    for value in HUGE:
        requests: list[tuple[str, str, dict[str, Any], str]] = [
            ("GET", f"/v1/models/churn/versions/{value}", {}, "version"),
            ("GET", f"/v1/models/churn/versions/{value}/lineage", {}, "version"),
            (
                "POST",
                f"/v1/models/churn/versions/{value}/validations",
                {"json": {"run_id": "r"}},
                "version",
            ),
            ("GET", f"/v1/datasets/d/versions/{value}", {}, "version"),
            ("GET", f"/v1/decisions/{value}", {}, "decision_id"),
            (
                "POST",
                f"/v1/decisions/{value}/resolve",
                {"json": {"no_check_reason": "x"}},
                "decision_id",
            ),
            (
                "POST",
                f"/v1/runs/{run.id}/inputs",
                {"json": {**item, "dataset_version": value}},
                "dataset_version",
            ),
        ]
        if value in BEYOND_BIGINT:
            requests += [
                (
                    "POST",
                    f"/v1/runs/{run.id}/inputs",
                    {"json": {**item, "row_count": value}},
                    "row_count",
                ),
                ("GET", "/v1/audit", {"params": {"since_ms": str(value)}}, "since_ms"),
            ]
        for method, path, options, field in requests:
            # a fresh connection each: a 500 used to drop the next keep-alive request too
            answer = httpx.request(method, live_server + path, timeout=30, **options)
            assert answer.status_code == 422, (path, answer.text)
            error = answer.json()["error"]
            assert (error["code"], error["field"]) == ("invalid_input", field), (path, error)


def test_cli_exits_2_for_a_version_out_of_range(settings: Settings, tmp_path: Path) -> None:
    with Client(settings=settings) as sdk:
        sdk.create_model("churn")
    env = {
        "KEEL_HOME": str(settings.home),
        "KEEL_DATABASE_URL": settings.database_url,
        "KEEL_SERVER_URL": None,
    }
    result = CliRunner().invoke(app, ["models", "deprecate", "churn", str(2**40)], env=env)
    assert result.exit_code == 2, result.output
    assert "version" in result.output and "Traceback" not in result.output


def test_nul_in_text_is_invalid_input_on_postgres(client: Client, settings: Settings) -> None:
    # PostgreSQL stores no NUL in text (SQLite does): the store's safety net turns the
    # driver's refusal into a 422 on both transports; the fuzz found these filters
    calls: list[Callable[[], object]] = [
        lambda: client.list_jobs(kind="a\x00b"),
        lambda: client.list_deployments("m\x00"),
        lambda: client.list_triggers("m\x00"),
        lambda: client.start_run(experiment="e", tags={"t": "a\x00"}),
    ]
    for call in calls:
        if settings.database_url is None:
            call()
        else:
            with pytest.raises(keel.InvalidInput, match="NUL"):
                call()
