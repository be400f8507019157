"""Every KeelError goes through the API's one handler with its own status and body shape."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import keel.errors
from keel.api.errors import install_error_handlers
from keel.errors import KeelError, error_from_payload


def _tree(cls: type[KeelError]) -> list[type[KeelError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_tree(sub)]
    return found


ERRORS = [KeelError, *_tree(KeelError)]


def _raising_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    by_name = {cls.__name__: cls for cls in ERRORS}

    @app.get("/raise/{name}")
    def _raise(name: str) -> None:
        raise by_name[name](f"{name} was raised", field="thing", limit=7, why="because")

    @app.get("/crash")
    def _crash() -> None:
        raise RuntimeError("secret internals")

    return app


def _get(path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=_raising_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://keel") as client:
            return await client.get(path)

    return asyncio.run(call())


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_error_handler_answers_with_the_class_status(cls: type[KeelError]) -> None:
    assert _get(f"/raise/{cls.__name__}").status_code == cls.status


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_error_handler_body_has_code_message_field_detail(cls: type[KeelError]) -> None:
    response = _get(f"/raise/{cls.__name__}")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "code": cls.code,
            "message": f"{cls.__name__} was raised",
            "field": "thing",
            "detail": {"limit": 7, "why": "because"},
        }
    }


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_error_from_payload_rebuilds_class_message_field(cls: type[KeelError]) -> None:
    response = _get(f"/raise/{cls.__name__}")
    error = error_from_payload(response.status_code, response.json())
    assert type(error) is cls
    assert (error.message, error.field) == (f"{cls.__name__} was raised", "thing")
    assert error.detail == {"limit": 7, "why": "because"}


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in ERRORS]
    assert len(codes) == len(set(codes))


def test_error_statuses_are_http_errors_and_unique_per_leaf() -> None:
    statuses = [cls.status for cls in ERRORS]
    assert all(400 <= status < 600 for status in statuses)
    assert len(statuses) == len(set(statuses))


def test_error_tree_docstring_matches_classes() -> None:
    documented = {
        name: (int(status), int(exit_code))
        for name, status, exit_code in re.findall(
            r"(\w+) \((\d+), exit (\d+)\)", keel.errors.__doc__ or ""
        )
    }
    assert documented == {cls.__name__: (cls.status, cls.exit_code) for cls in ERRORS}


def test_error_handler_hides_unexpected_exceptions() -> None:
    response = _get("/crash")
    assert response.status_code == 500
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == "internal"
    assert "secret internals" not in response.text and "RuntimeError" in body["message"]


@pytest.mark.parametrize("payload", ["<html>bad gateway</html>", {"detail": "x"}, None])
def test_error_from_payload_keeps_status_of_foreign_bodies(payload: Any) -> None:
    error = error_from_payload(502, payload)
    assert isinstance(error, KeelError)
    assert "502" in error.message


def test_error_from_payload_maps_unknown_code_by_status() -> None:
    error = error_from_payload(409, {"error": {"code": "from_the_future", "message": "taken"}})
    assert type(error) is keel.errors.Conflict and error.message == "taken"
