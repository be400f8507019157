"""The ``gate`` decision of ``keel validate`` is recorded on both transports, by one writer.

Over HTTP there was no route to write it (``/v1/decisions`` is read-only), so a remote
validation kept its report but left no decision. Now the SDK asks the transport for it:
embedded it calls :func:`keel.automation.gates.decision.record_gate_decision`, over HTTP
``POST /v1/models/{name}/versions/{version}/validations`` calls the same function on the
server, which reads the numbers from the report stored on the validation run.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.automation.test_gates_cli import _register, data  # noqa: F401  (fixture)
from typer.testing import CliRunner

from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET

POLICY = {"latency": {"budget_ms": 10_000, "max_batches": 10}, "margin": {"kind": "relative"}}


def test_validate_model_records_one_gate_decision_on_both_transports(
    client: Client,
    data: dict[str, Any],  # noqa: F811
) -> None:
    _register(client, data)
    report = client.validate_model(
        "models:/churn/2", data["holdout"], TARGET, against="models:/churn@champion", policy=POLICY
    )
    run_id = client.get_model_version("churn", 2).tags["keel.validation.run_id"]
    [decision] = client.decisions(model="churn", kind="gate")
    assert decision.related == {"version": 2, "run_id": run_id}
    assert decision.details["run_id"] == run_id
    assert decision.details["passed"] is report.passed
    assert decision.details["challenger"] == "models:/churn/2"
    assert decision.details["champion"] == "models:/churn/1"
    margin = report.gate("margin")
    assert decision.details["gates"]["margin"] == {
        "status": margin.status,
        "value": margin.value,
        "threshold": margin.threshold,
        "reason": margin.reason,
    }
    assert decision.summary == report.summary()
    assert decision.actor == getpass.getuser()  # who validated, alike on both transports


def test_the_route_records_only_a_stored_validation_of_that_version(
    settings: Settings,
    live_server: str,
    data: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    with Client(live_server, settings=settings.model_copy(update={"home": tmp_path})) as sdk:
        _register(sdk, data)
        data["holdout"].to_parquet(tmp_path / "holdout.parquet")
        # the CLI over --server: the decision is written on the server
        result = CliRunner().invoke(
            app,
            ["validate", "models:/churn/2", "--against", "models:/churn@champion",
             "--holdout", str(tmp_path / "holdout.parquet"), "--label", TARGET,
             "--server", live_server],
            env={"KEEL_HOME": str(tmp_path / "cli")},
        )  # fmt: skip
        assert result.exit_code in (0, 1), result.output
        [decision] = sdk.decisions(model="churn", kind="gate")
        validation = sdk.get_model_version("churn", 2).tags["keel.validation.run_id"]
        training = sdk.get_model_version("churn", 2).run_id
        assert decision.related["run_id"] == validation

    url = f"{live_server}/v1/models/churn/versions/{{}}/validations"
    bad: list[tuple[int, dict[str, Any], int, str | None]] = [
        (2, {"run_id": training}, 422, "run_id"),  # a training run, not a validation
        (1, {"run_id": validation}, 422, "run_id"),  # a validation of another version
        (2, {"run_id": "no-such-run"}, 422, "run_id"),
        (2, {}, 422, "run_id"),
        (2, {"run_id": validation, "passed": True}, 422, "passed"),  # numbers are not taken
        (9, {"run_id": validation}, 404, None),
    ]
    for version, body, status, field in bad:
        answer = httpx.post(url.format(version), json=body, timeout=30)
        assert answer.status_code == status, (version, body, answer.text)
        if field is not None:
            assert answer.json()["error"]["field"] == field, answer.text
    answer = httpx.post(url.format(2), json={"run_id": validation}, timeout=30)
    assert answer.status_code == 201, answer.text
    assert answer.json()["details"]["run_id"] == validation
    with Client(live_server, settings=settings.model_copy(update={"home": tmp_path})) as sdk:
        assert len(sdk.decisions(model="churn", kind="gate")) == 2  # no refused call wrote one


@pytest.mark.parametrize("stored", [[], {"gates": "x"}, {"gates": [{"nope": 1}]}, "text"])
def test_a_stored_report_that_is_not_one_is_refused_naming_run_id(stored: Any) -> None:
    from keel.automation.gates.decision import report_from_dict
    from keel.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        report_from_dict(stored)
    assert caught.value.field == "run_id"
