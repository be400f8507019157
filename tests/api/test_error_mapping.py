"""Regressions for error mapping found while testing the API (see issue 3 note)."""

from __future__ import annotations

import httpx
import pytest

import keel
from keel.errors import error_from_payload
from keel.services import Services


@pytest.mark.parametrize(
    "status, expected",
    [(503, keel.Unavailable), (404, keel.NotFound), (400, keel.BadRequest), (418, keel.KeelError)],
)
def test_non_keel_error_body_maps_by_status(status: int, expected: type) -> None:
    error = error_from_payload(status, "<html>bad gateway</html>")
    assert type(error) is expected and str(status) in error.message


def test_wrong_method_is_405_method_not_allowed(live_server: str) -> None:
    response = httpx.delete(f"{live_server}/v1/experiments")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    rebuilt = error_from_payload(405, response.json())
    assert isinstance(rebuilt, keel.MethodNotAllowed) and rebuilt.status == 405


def test_duplicate_experiment_names_field_without_database_text(live_server: str) -> None:
    httpx.post(f"{live_server}/v1/experiments", json={"name": "dup"})
    body = httpx.post(f"{live_server}/v1/experiments", json={"name": "dup"}).json()["error"]
    assert body["code"] == "conflict" and body["field"] == "name"
    assert "UNIQUE" not in str(body) and "duplicate key" not in str(body)


def test_invalid_alias_is_422_before_version_lookup(services: Services) -> None:
    services.registry.create_model("m")
    with pytest.raises(keel.InvalidInput) as caught:
        services.registry.set_alias("m", "1bad", 99)
    assert caught.value.field == "alias"
