"""Every refusal of ``POST /v1/deployments`` has one shape: ``field``, a message starting with
it and ``detail.errors`` listing it, on REST and both SDK transports, SQLite and PostgreSQL.

The registry checks (unknown version, alias, model, metric, segment; a version served twice
through an alias; an archived version) used to answer ``detail: {}``; an integer too large
for the database used to reach it and answer ``field: null`` with the driver's message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel.api import create_app
from keel.cli.main import app as cli
from keel.client import Client
from keel.errors import InvalidInput
from keel.services import Services

HUGE = 99999999999999999999999  # no database integer holds it
INT32_PLUS = 2**31  # SQLite holds it; PostgreSQL's INTEGER column does not
BASE: dict[str, Any] = {
    "name": "tiny-live",
    "model": "tiny",
    "strategy": "canary",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}],
}
#: What the database never sees: a driver's words must not reach the caller.
DRIVER_WORDS = ("sqlite", "integer", "psycopg", "bigint", "python int", "out of range (")


def _arm(i: int, **arm: Any) -> dict[str, Any]:
    arms = [dict(a) for a in BASE["arms"]]
    arms[i] = arm
    return {**BASE, "arms": arms}


def _ab(weights: tuple[Any, Any]) -> dict[str, Any]:
    return {
        **BASE,
        "strategy": "ab",
        "arms": [
            {"version": 1, "role": "primary", "weight": weights[0]},
            {"version": 2, "role": "challenger", "weight": weights[1]},
        ],
    }


#: (case id, policy, the field its 422 names)
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-version", _arm(1, version=99, role="canary"), "arms[1].version"),
    ("unknown-alias", _arm(1, alias="nope", role="canary"), "arms[1].alias"),
    ("unknown-model", {**BASE, "model": "nomodel"}, "model"),
    ("unknown-metric", {**BASE, "guardrails": {"metric": {"name": "bogus"}}},
     "guardrails.metric.name"),
    ("unknown-secondary", {**BASE, "guardrails": {"secondary": [{"name": "bogus"}]}},
     "guardrails.secondary[0].name"),
    ("twice-via-alias", {**BASE, "arms": [{"alias": "champion", "role": "primary"},
                                          {"version": 1, "role": "canary"}]},
     "arms[1].version"),
    ("archived-version", _arm(1, version=3, role="canary"), "arms[1].version"),
    ("unknown-segment", {**BASE, "analysis": {"segments": ["nope"]}}, "analysis.segments[0]"),
    ("huge-version", _arm(1, version=HUGE, role="canary"), "arms[1].version"),
    ("int32-version", _arm(1, version=INT32_PLUS, role="canary"), "arms[1].version"),
    ("huge-primary-version", _arm(0, version=HUGE, role="primary"), "arms[0].version"),
    ("huge-min-samples-per-step", {**BASE, "min_samples_per_step": HUGE},
     "min_samples_per_step"),
    ("huge-error-rate-samples", {**BASE, "guardrails": {"error_rate": {"min_samples": HUGE}}},
     "guardrails.error_rate.min_samples"),
    ("huge-p99-samples", {**BASE, "guardrails": {"p99_latency": {"min_samples": HUGE}}},
     "guardrails.p99_latency.min_samples"),
    ("huge-shadow-samples", {**BASE, "shadow": {"min_samples": HUGE}}, "shadow.min_samples"),
    ("huge-planned-samples",
     {**BASE, "analysis": {"method": "fixed_horizon", "planned_samples_per_arm": HUGE}},
     "analysis.planned_samples_per_arm"),
    ("huge-step", {**BASE, "steps": [5, HUGE]}, "steps[1]"),
    ("huge-weight", _ab((HUGE, 0)), "arms[0].weight"),
    ("float-overflow-weight", _ab((10**400, 0)), "arms[0].weight"),
    ("huge-dwell", {**BASE, "min_dwell": HUGE}, "min_dwell"),
    ("float-overflow-dwell", {**BASE, "min_dwell": 10**400}, "min_dwell"),
    ("huge-guard-for", {**BASE, "guardrails": {"p99_latency": {"for": HUGE}}},
     "guardrails.p99_latency.for"),
    ("huge-retention", {**BASE, "retention": {"keep_previous": f"{HUGE}d"}},
     "retention.keep_previous"),
]  # fmt: skip


@pytest.fixture
def tiny(services: Services) -> None:
    """``tiny`` v1, v2, v3 with input ``x`` (v3 archived, ``champion`` on v1)."""
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    with Client(settings=services.settings) as client:
        with client.start_run("create-errors") as run:
            for _ in range(3):
                run.log_model(model, registered_name="tiny", input_example=frame[:2])
        client.set_alias("tiny", "champion", 1)
        client.archive_model_version("tiny", 3)


@pytest.fixture
def both(services: Services, tiny: None) -> Iterator[dict[str, Any]]:
    """The embedded client, the HTTP client and the URL of the live server they share."""
    with serve_in_thread(create_app(services=services)) as url:
        local = Client(settings=services.settings)
        remote = Client(url, settings=services.settings.model_copy(
            update={"home": services.settings.home / "remote"}))  # fmt: skip
        try:
            yield {"local": local, "http": remote, "url": url}
        finally:
            local.close()
            remote.close()


def _refusal(call: Any, *args: Any, **kwargs: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    return caught.value


def _check_shape(field: str | None, message: str, detail: dict[str, Any], want: str) -> None:
    assert field == want, message
    assert message.startswith(f"{want}: "), message
    errors = detail.get("errors")
    assert errors, f"{want}: no detail.errors in {detail}"
    assert errors[0] == {"field": want, "message": message.removeprefix(f"{want}: ")}
    assert not any(word in message.lower() for word in DRIVER_WORDS), message


@pytest.mark.parametrize(("policy", "want"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_every_create_refusal_names_its_field_and_lists_it(
    both: dict[str, Any], services: Services, policy: dict[str, Any], want: str
) -> None:
    response = httpx.post(f"{both['url']}/v1/deployments", json=policy)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    _check_shape(error["field"], error["message"], error["detail"], want)
    seen = {}
    for transport in ("local", "http"):
        refused = _refusal(both[transport].create_deployment, policy)
        _check_shape(refused.field, refused.message, refused.detail, want)
        seen[transport] = (refused.field, refused.message, refused.detail)
    assert seen["local"] == seen["http"] == (error["field"], error["message"], error["detail"])
    assert services.deployments.list() == []  # nothing half-created


def test_cli_create_exits_2_naming_the_field(
    services: Services, tiny: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    runner = CliRunner()
    for policy, want in [(REFUSED[0][1], "arms[1].version"), (REFUSED[8][1], "arms[1].version"),
                         (REFUSED[3][1], "guardrails.metric.name")]:  # fmt: skip
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        result = runner.invoke(cli, ["deploy", "create", "-f", str(path)])
        assert result.exit_code == 2, result.output
        assert want in result.output and "Traceback" not in result.output
        assert not any(word in result.output.lower() for word in DRIVER_WORDS), result.output


def test_replay_and_decisions_refuse_too_large_integers_naming_the_field(
    both: dict[str, Any], services: Services
) -> None:
    services.deployments.create(BASE, actor="ana")
    url = f"{both['url']}/v1/deployments/{BASE['name']}"
    for versions in ([HUGE], [1, INT32_PLUS]):
        response = httpx.post(f"{url}/replay", json={"versions": versions})
        assert response.status_code == 422, response.text
        field = f"versions[{len(versions) - 1}]"
        assert response.json()["error"]["field"] == field
        for transport in ("local", "http"):
            refused = _refusal(both[transport].replay_deployment, BASE["name"], versions)
            assert refused.field == field, refused.message
    response = httpx.post(f"{url}/replay", json={"versions": [1], "since": HUGE})
    assert response.status_code == 422 and response.json()["error"]["field"] == "since"
    for transport in ("local", "http"):
        refused = _refusal(both[transport].replay_deployment, BASE["name"], [1], HUGE)
        assert refused.field == "since", refused.message
    response = httpx.get(f"{url}/decisions", params={"limit": HUGE})
    assert response.status_code == 422 and response.json()["error"]["field"] == "limit"
    for transport in ("local", "http"):
        refused = _refusal(both[transport].deployment_decisions, BASE["name"], HUGE)
        assert refused.field == "limit", refused.message


def test_cli_replay_versions_too_large_exits_2(
    services: Services, tiny: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.deployments.create(BASE, actor="ana")
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    result = CliRunner().invoke(cli, ["deploy", "replay", BASE["name"], "--versions", f"1,{HUGE}"])
    assert result.exit_code == 2, result.output
    assert "--versions: " in result.output, result.output
    assert not any(word in result.output.lower() for word in DRIVER_WORDS), result.output


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_routing_key_type_says_a_string_or_an_integer(
    both: dict[str, Any], services: Services
) -> None:
    services.deployments.create(BASE, actor="ana")
    url = f"{both['url']}/v1/deployments/{BASE['name']}/predict"
    ok = httpx.post(url, json={"instances": [{"x": 1.0}], "routing_key": 123})
    assert ok.status_code == 200, ok.text  # an integer key is accepted on purpose
    for bad in ({"a": 1}, [1], True, 1.5):
        response = httpx.post(url, json={"instances": [{"x": 1.0}], "routing_key": bad})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == "routing_key"
        assert "must be a string or an integer, got" in error["message"], error["message"]
    refused = _refusal(both["local"].predict, BASE["name"], [{"x": 1.0}], routing_key=[1])
    assert refused.field == "routing_key" and "a string or an integer" in refused.message
