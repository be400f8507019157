"""The docs examples' world, built once per session (tests/docs/_world.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.docs._plan import build_world


@pytest.fixture(scope="session")
def docs_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded KEEL_HOME (``home``) and the files the docs name (``files``)."""
    world = tmp_path_factory.mktemp("docs-world")
    build_world(world)
    return world
