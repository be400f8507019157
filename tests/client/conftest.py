"""Fixtures of the client tests: a real small disk for the full-disk tests
(:mod:`tests._mounts`), and a PostgreSQL schema whose tables live on it."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from tests._mounts import small_fs


@pytest.fixture
def disk() -> Iterator[Path]:
    # not under tmp_path (mode 0700): the PostgreSQL server's user must reach the mount
    parent = Path(tempfile.mkdtemp(prefix="keel-disk-"))
    parent.chmod(0o755)
    try:
        with small_fs(parent / "disk", 8 * 2**20) as path:
            yield path
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def postgres_on_disk(disk: Path, postgres_url: str) -> Iterator[str]:
    """A PostgreSQL schema whose tables are created in a tablespace on ``disk``."""
    name = f"keel_test_{uuid.uuid4().hex[:10]}"
    location = disk / "pg"
    location.mkdir()
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        shutil.chown(location, "postgres", "postgres")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE TABLESPACE {name} LOCATION '{location}'"))
    except (LookupError, DBAPIError) as exc:  # no postgres user, or the server is elsewhere
        admin.dispose()
        pytest.skip(f"the PostgreSQL server cannot use a tablespace on a local tmpfs: {exc}")
    options = f"-csearch_path={name} -cdefault_tablespace={name}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        url = make_url(postgres_url).update_query_dict({"options": options})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            conn.execute(text(f"DROP TABLESPACE {name}"))  # checkpoints first if it must
        admin.dispose()
