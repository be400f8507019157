"""Shared fixtures: real SQLite files, real PostgreSQL, a real uvicorn server.

Tests that need PostgreSQL use ``KEEL_TEST_DATABASE_URL`` (default: the local
server's ``test`` database). Under ``CI=true`` an unreachable PostgreSQL fails
the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from keel.api import create_app
from keel.client import Client
from keel.config import Settings
from keel.services import Services, open_services
from keel.store.sql.migrate import open_engine

POSTGRES_URL = os.environ.get(
    "KEEL_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
# A gateway freezes the heap at start after one full collection (KEEL_SERVING_GC_FREEZE):
# in a test process that has imported and built everything, 0.2-0.5 s at each of the
# suite's ~2,000 gateway starts, and each stop unfreezes it again. The suite runs
# without; tests/serving/test_interpreter_settings.py checks the freeze itself.
os.environ.setdefault("KEEL_SERVING_GC_FREEZE", "false")


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means "not reachable"
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """PostgreSQL URL; skips locally when unreachable, fails under CI=true."""
    problem = _postgres_reachable()
    if problem:
        message = f"PostgreSQL at {POSTGRES_URL} unreachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return POSTGRES_URL


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    with postgres_schema(postgres_url) as url:
        yield url


@contextmanager
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema (its URL), dropped on exit; for fixtures wider than a test."""
    schema = f"keel_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Store backend under test: every store test runs on SQLite and PostgreSQL."""
    return str(request.param)


_migrated: Path | None = None


def with_migrated_database(home: Path) -> Path:
    """``home`` holding ``keel.db``: a copy of a SQLite file migrated to head once per test
    process, by keel's own migrations.

    Running every migration again took 0.1-0.2 s of each of the suite's ~2,000 SQLite
    setups. Tests of migrations themselves are marked ``fresh_database``.
    """
    global _migrated
    if _migrated is None:
        folder = Path(tempfile.mkdtemp(prefix="keel-migrated-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        engine = open_engine(Settings(home=folder))
        engine.dispose()  # the last connection closed: SQLite checkpoints and drops the WAL
        assert not (folder / "keel.db-wal").exists()
        _migrated = folder / "keel.db"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated, home / "keel.db")
    return home


def _sqlite_home(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """``tmp_path/keel``, with a migrated database unless the test is ``fresh_database``."""
    home = tmp_path / "keel"
    if request.node.get_closest_marker("fresh_database") is None:
        with_migrated_database(home)
    return home


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    """Settings with a temporary home and the selected database."""
    if backend == "postgres":
        url = request.getfixturevalue("postgres_schema_url")
        return Settings(home=tmp_path / "keel", database_url=url)
    return Settings(home=_sqlite_home(tmp_path, request))


@pytest.fixture
def sqlite_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings on a temporary SQLite file only."""
    return Settings(home=_sqlite_home(tmp_path, request))


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """Domain services over a migrated store."""
    svc = open_services(settings)
    yield svc
    svc.close()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass

    async def main_loop(self) -> None:
        # uvicorn looks at should_exit every 0.1 s, 50 ms on average of every stop: 10 ms here
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            await asyncio.sleep(0.01)


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = _ThreadServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(services: Services) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, serving ``services``."""
    with serve_in_thread(create_app(services=services)) as url:
        yield url


@pytest.fixture(params=["local", "http"])
def client(
    request: pytest.FixtureRequest, settings: Settings, services: Services
) -> Iterator[Client]:
    """The SDK over both transports: every client test runs embedded and over HTTP."""
    if request.param == "local":
        sdk = Client(settings=settings)
    else:
        url = request.getfixturevalue("live_server")
        sdk = Client(url, settings=settings.model_copy(update={"home": settings.home / "remote"}))
    yield sdk
    sdk.close()


@contextmanager
def server_process(log_dir: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``uvicorn keel.api.app:create_app`` in its own process (so tests can ``kill -9`` it).

    ``env`` holds the KEEL_* settings; the caller's KEEL_* variables are dropped. Yields
    the base URL once ``/healthz`` answers, and the process; kills it at the end.
    """
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    environ.update(env)
    command = [sys.executable, "-m", "uvicorn", "keel.api.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with (log_dir / "server.log").open("wb") as log:
        process = subprocess.Popen(command, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # importing the app takes seconds on a busy machine
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)  # else Popen.__del__ warns in a later test
            raise RuntimeError((log_dir / "server.log").read_text()[-2000:])
        time.sleep(0.05)
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
