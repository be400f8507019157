"""``keel users``, ``keel tokens``, ``keel audit`` and the ``keel server`` bind check."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import serve_in_thread
from typer.testing import CliRunner, Result

from keel._durations import parse_time
from keel.api import create_app
from keel.cli.main import app
from keel.config import Settings
from keel.errors import InvalidInput
from keel.services import open_services

runner = CliRunner()


def cli(home: Path, *args: str, **env: str) -> Result:
    base: dict[str, str | None] = {
        "KEEL_HOME": str(home),
        "KEEL_DATABASE_URL": None,
        "KEEL_SERVER_URL": None,
        "KEEL_TOKEN": None,
        "KEEL_AUTH": None,
    }
    return runner.invoke(app, list(args), env={**base, **env})


def ok_json(home: Path, *args: str, **env: str) -> Any:
    result = cli(home, *args, "--json", **env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_admin_prints_a_working_token_once(tmp_path: Path) -> None:
    result = cli(tmp_path, "users", "create-admin", "root")
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("keel_") and "shown once" in result.stdout
    services = open_services(Settings(home=tmp_path, auth="on"))
    try:
        assert services.auth.authenticate(token).name == "root"
    finally:
        services.close()
    again = cli(tmp_path, "users", "create-admin", "other")
    assert again.exit_code == 1 and "admin already exists" in again.stderr


def test_users_and_tokens_lifecycle_json(tmp_path: Path) -> None:
    ok_json(tmp_path, "users", "create", "bob", "--role", "deployer", "--team", "growth")
    assert [(u["name"], u["role"], u["teams"]) for u in ok_json(tmp_path, "users", "list")] == [
        ("bob", "deployer", ["growth"])
    ]
    created = ok_json(
        tmp_path, "tokens", "create", "bob", "--name", "ci", "--expires-in-days", "30"
    )
    listed = ok_json(tmp_path, "tokens", "list", "--user", "bob")
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    revoked = ok_json(tmp_path, "tokens", "revoke", created["id"])
    assert revoked["revoked_at_ms"] is not None
    assert ok_json(tmp_path, "users", "disable", "bob")["is_active"] is False
    actions = [e["action"] for e in ok_json(tmp_path, "audit", "--since", "1h")]
    assert actions == ["user.update", "token.revoke", "token.create", "user.create"]
    assert ok_json(tmp_path, "audit", "--action", "token.")[0]["actor"].startswith("local:")


def test_bad_role_is_exit_2(tmp_path: Path) -> None:
    result = cli(tmp_path, "users", "create", "x", "--role", "root")
    assert result.exit_code == 2


def test_audit_bad_since_names_the_option(tmp_path: Path) -> None:
    result = cli(tmp_path, "audit", "--since", "yesterday-ish")
    assert result.exit_code == 2 and "--since" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [("30m", -1_800_000), ("2h", -7_200_000), ("1970-01-01T00:00:01", 1000)],
)
def test_audit_since_reads_the_one_time_grammar(text: str, expected_ms: int) -> None:
    """``keel audit --since`` goes through keel._durations.parse_time (ages are before now)."""
    before_ms = int(time.time() * 1000)
    moment = parse_time(text, "--since")
    assert moment is not None
    got_ms = int(moment.timestamp() * 1000)
    if expected_ms < 0:  # an age: now minus it, give or take the test's own run time
        assert before_ms + expected_ms - 5 <= got_ms <= int(time.time() * 1000) + expected_ms
    else:
        assert got_ms == expected_ms
    with pytest.raises(InvalidInput) as caught:
        parse_time("soon", "--since")
    assert caught.value.field == "--since"


def test_cli_over_http_uses_keel_token(tmp_path: Path) -> None:
    services = open_services(Settings(home=tmp_path / "srv", auth="on"))
    token = services.auth.create_admin("root").token
    try:
        with serve_in_thread(create_app(services=services)) as url:
            denied = cli(tmp_path, "users", "list", "--server", url)
            assert denied.exit_code == 1 and "API token is required" in denied.stderr
            users = ok_json(tmp_path, "users", "list", "--server", url, KEEL_TOKEN=token)
            assert [u["name"] for u in users] == ["root"]
            models = cli(tmp_path, "models", "list", "--server", url, "--json", KEEL_TOKEN=token)
            assert models.exit_code == 0, models.output
            entries = ok_json(tmp_path, "audit", "--server", url, KEEL_TOKEN=token)
            assert isinstance(entries, list)
    finally:
        services.close()


def test_server_refuses_network_bind_without_auth(tmp_path: Path) -> None:
    result = cli(tmp_path, "server", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "KEEL_AUTH=on" in result.output and "keel users create-admin" in result.output


def test_server_refuses_network_bind_without_an_admin(tmp_path: Path) -> None:
    result = cli(tmp_path, "server", "--host", "0.0.0.0", KEEL_AUTH="on")
    assert result.exit_code == 2
    assert "no admin exists" in result.output and "keel users create-admin" in result.output


def test_server_flag_does_not_bypass_missing_admin(tmp_path: Path) -> None:
    result = cli(
        tmp_path, "server", "--host", "0.0.0.0", "--allow-remote-without-auth", KEEL_AUTH="on"
    )
    assert result.exit_code == 2 and "no admin exists" in result.output


def test_sdk_sends_bearer_token(tmp_path: Path) -> None:
    from keel.client import Client
    from keel.errors import Unauthorized

    services = open_services(Settings(home=tmp_path / "srv", auth="on"))
    token = services.auth.create_admin("root").token
    try:
        with serve_in_thread(create_app(services=services)) as url:
            remote = Settings(home=tmp_path / "sdk")
            with Client(url, token=token, settings=remote) as client:
                client.create_experiment("from-sdk")
            with Client(url, settings=remote) as anonymous, pytest.raises(Unauthorized):
                anonymous.create_experiment("nope")
            assert (
                httpx.get(f"{url}/v1/whoami", headers={"authorization": f"Bearer {token}"}).json()[
                    "role"
                ]
                == "admin"
            )
    finally:
        services.close()
