"""Audit log: every mutating call is recorded, alias moves with before/after, read-only API."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
from tests._mounts import fill_up, small_fs
from tests.conftest import serve_in_thread
from tests.security.conftest import AuthServer, register_versions

from keel.api import create_app
from keel.api.authz import iter_routes
from keel.auth.models import AuditQuery
from keel.client import Client
from keel.config import Settings
from keel.services import Services


def _entries(services: Services, **query: object) -> list:  # type: ignore[type-arg]
    return services.auth.audit(AuditQuery(**query))  # type: ignore[arg-type]


def test_mutating_call_is_recorded_with_actor_status_route_and_client(
    auth_server: AuthServer,
) -> None:
    response = httpx.post(
        f"{auth_server.url}/v1/experiments",
        json={"name": "audited"},
        headers=auth_server.headers("editor"),
    )
    assert response.status_code == 201
    [entry] = _entries(auth_server.services, action="POST /v1/experiments")
    assert (entry.actor, entry.status, entry.client) == ("editor", 201, "127.0.0.1")
    assert (entry.method, entry.route, entry.target) == (
        "POST",
        "/v1/experiments",
        "/v1/experiments",
    )


def test_denied_calls_are_recorded(auth_server: AuthServer) -> None:
    url = f"{auth_server.url}/v1/experiments"
    assert (
        httpx.post(url, json={"name": "x"}, headers=auth_server.headers("viewer")).status_code
        == 403
    )
    assert httpx.post(url, json={"name": "x"}).status_code == 401
    statuses = {(e.actor, e.status) for e in _entries(auth_server.services, action="experiments")}
    assert statuses == {("viewer", 403), (None, 401)}


def test_reads_are_not_recorded(auth_server: AuthServer) -> None:
    before = len(_entries(auth_server.services, limit=10_000))
    httpx.get(f"{auth_server.url}/v1/models", headers=auth_server.headers("viewer"))
    assert len(_entries(auth_server.services, limit=10_000)) == before


def test_alias_move_recorded_once_with_before_and_after(auth_server: AuthServer) -> None:
    register_versions(auth_server.services.settings, "m", 2)
    url = f"{auth_server.url}/v1/models/m/aliases/champion"
    headers = auth_server.headers("deployer")
    for version in (1, 2):
        body = {"version": version, "reason": f"to {version}"}
        assert httpx.put(url, json=body, headers=headers).status_code == 200
    assert httpx.delete(url, headers=headers).status_code == 200
    moves = _entries(auth_server.services, action="alias.")
    assert [(e.action, e.before, e.after["version"]) for e in reversed(moves)] == [
        ("alias.set", {"version": None}, 1),
        ("alias.set", {"version": 1}, 2),
        ("alias.delete", {"version": 2}, None),
    ]
    assert {(e.actor, e.route, e.client, e.target) for e in moves} == {
        ("deployer", "/v1/models/{name}/aliases/{alias}", "127.0.0.1", "models:/m@champion")
    }


def test_embedded_alias_moves_are_audited_too(services: Services, settings: Settings) -> None:
    register_versions(settings, "local", 1)
    with Client(settings=settings) as client:
        client.set_alias("local", "champion", 1, reason="first")
    [entry] = _entries(services, action="alias.set")
    assert (entry.client, entry.after) == ("local", {"version": 1, "reason": "first"})


def test_token_creation_through_api_is_audited_without_secret(auth_server: AuthServer) -> None:
    response = httpx.post(
        f"{auth_server.url}/v1/users/editor/tokens",
        json={"name": "ci"},
        headers=auth_server.headers("admin"),
    )
    assert response.status_code == 201
    secret = response.json()["token"]
    [entry] = _entries(auth_server.services, action="token.create", actor="admin")
    assert entry.target == f"token:{response.json()['id']}" and secret not in str(entry)


def test_audit_endpoint_is_admin_only_and_filters(auth_server: AuthServer) -> None:
    httpx.post(
        f"{auth_server.url}/v1/experiments",
        json={"name": "a"},
        headers=auth_server.headers("editor"),
    )
    url = f"{auth_server.url}/v1/audit"
    assert httpx.get(url, headers=auth_server.headers("deployer")).status_code == 403
    rows = httpx.get(url, params={"actor": "editor"}, headers=auth_server.headers("admin")).json()
    assert [r["action"] for r in rows] == ["POST /v1/experiments"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_audit_log_cannot_be_edited_through_the_api(auth_server: AuthServer, method: str) -> None:
    for path in ("/v1/audit", "/v1/audit/1"):
        response = httpx.request(
            method, auth_server.url + path, json={}, headers=auth_server.headers("admin")
        )
        assert response.status_code in (404, 405), (path, response.status_code)


def test_no_route_under_audit_mutates(sqlite_settings: Settings) -> None:
    routes = iter_routes(create_app(sqlite_settings).routes)
    assert {m for m, path, _ in routes if path.startswith("/v1/audit")} == {"GET"}


def test_auth_off_still_audits_with_the_unverified_user_hint(services: Services) -> None:
    with serve_in_thread(create_app(services=services)) as url:
        httpx.post(f"{url}/v1/experiments", json={"name": "e"}, headers={"x-keel-user": "ann"})
    [entry] = _entries(services, action="POST /v1/experiments")
    assert (entry.actor, entry.status) == ("ann", 201)


def test_audit_writer_batches_concurrent_entries_and_commits_on_close() -> None:
    from collections.abc import Sequence

    from keel.auth.audit import AuditWriter
    from keel.auth.models import AuditEntry

    batches: list[int] = []

    def append(entries: Sequence[AuditEntry]) -> None:
        batches.append(len(entries))

    writer = AuditWriter(append, linger_s=0.05)
    for i in range(20):
        writer.submit(AuditEntry(at_ms=i, action="a"))
    writer.close()
    assert sum(batches) == 20 and len(batches) <= 2  # one linger window, not 20 commits


def test_audit_writer_bounds_its_queue_when_the_database_is_stuck() -> None:
    import threading
    from collections.abc import Sequence

    from keel.auth.audit import AuditWriter
    from keel.auth.models import AuditEntry

    release = threading.Event()

    def stuck(entries: Sequence[AuditEntry]) -> None:
        release.wait(5)

    writer = AuditWriter(stuck, max_queue=3, linger_s=0)
    for i in range(10):
        writer.submit(AuditEntry(at_ms=i, action="a"))
    assert writer.dropped >= 5
    release.set()
    writer.close()


def test_reads_sent_as_post_are_not_audited(auth_server: AuthServer) -> None:
    body = {"experiments": ["none"], "filter": "metrics.a > 1"}
    response = httpx.post(
        f"{auth_server.url}/v1/runs/search", json=body, headers=auth_server.headers("viewer")
    )
    assert response.status_code == 404
    assert _entries(auth_server.services, action="search") == []


def test_audit_entries_are_kept_and_retried_while_the_database_disk_is_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real full tmpfs under SQLite (tests._mounts): no entry lost, one warning line."""
    from keel.auth.audit import AuditWriter
    from keel.auth.models import AuditEntry
    from keel.errors import Unavailable
    from keel.services import open_services

    big = {"x": "v" * 4_000}
    with small_fs(tmp_path / "disk", 8 * 2**20) as disk:
        services = open_services(Settings(home=disk / "keel"))
        store = services.auth.store
        writer = AuditWriter(store.append_audit, linger_s=0, retry_s=0.1)
        try:
            filler = fill_up(disk)
            sent = 0
            with caplog.at_level(logging.INFO, logger="keel.audit"):
                # SQLite first fills the free pages it still holds, then meets ENOSPC
                while sent < 20_000:
                    sent += 1
                    writer.submit(AuditEntry(at_ms=sent, action="a", after=big))
                    if sent % 20 == 0:
                        try:
                            writer.flush()
                        except Unavailable:
                            break
                else:
                    pytest.fail("20,000 audit entries fitted on a full disk")
                for _ in range(10):  # more arrive during the outage
                    sent += 1
                    writer.submit(AuditEntry(at_ms=sent, action="a", after=big))
                time.sleep(0.5)  # several retries, all refused
                filler.unlink()
                deadline = time.monotonic() + 10
                while True:
                    try:
                        writer.flush()
                        break
                    except Unavailable:
                        assert time.monotonic() < deadline, "kept entries never written"
                        time.sleep(0.1)
            writer.close()
            stored = store.query_audit(AuditQuery(action="a", limit=10_000))
            assert len(stored) == sent and writer.dropped == 0
            assert sorted(e.at_ms for e in stored) == list(range(1, sent + 1))
            warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            assert "database or disk is full" in warnings[0].getMessage()
            assert warnings[0].exc_info is None  # one line, no traceback
            assert any("kept entries" in r.getMessage() for r in caplog.records)
        finally:
            writer.close()
            services.close()
