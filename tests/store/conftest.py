"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keel.config import Settings
from keel.services import Services, open_services


@pytest.fixture
def sqlite_services(sqlite_settings: Settings) -> Iterator[Services]:
    """Services over a fresh SQLite file (the fast-write paths are SQLite's)."""
    services = open_services(sqlite_settings)
    yield services
    services.close()
