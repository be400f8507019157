"""``keel features ... --server`` is a client: it must not load pandas, DuckDB or SciPy.

``keel.features/__init__`` imported the whole store eagerly, so reading even
``keel.features.models`` (the wire types) pulled pandas in; its names now load on
first use. Each command runs in a fresh interpreter against a real server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import serve_in_thread
from tests.features.conftest import Seed

from keel.api import create_app
from keel.config import Settings
from keel.services import open_services

HEAVY = ("pandas", "duckdb", "scipy", "sklearn")

_RUN = """
import json, sys
from keel.cli.main import app
try:
    app(sys.argv[1:])
    code = 0
except SystemExit as stop:
    code = stop.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("\\n" + json.dumps({{"code": code, "heavy": heavy}}))
"""


@pytest.fixture
def server(sqlite_settings: Settings, seed: Seed) -> Iterator[str]:
    services = open_services(sqlite_settings)
    services.features.apply(seed.defs)
    with serve_in_thread(create_app(services=services)) as url:
        yield url
    services.close()


def _cli(*args: str, home: Path) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "KEEL_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    *output, last = done.stdout.rstrip("\n").splitlines()
    return json.loads(last), "\n".join(output)


@pytest.mark.parametrize(
    "command",
    [
        ["features", "list", "--json"],
        ["features", "show", "customer_usage", "--json"],
        ["features", "get", "customer_usage:calls_last_30d", "customer_id=1", "--json"],
    ],
)
def test_a_features_command_over_a_server_loads_no_heavy_library(
    server: str, tmp_path: Path, command: list[str]
) -> None:
    result, output = _cli(*command, "--server", server, home=tmp_path / "client-home")
    assert result == {"code": 0, "heavy": []}, output
    assert output.strip(), "the command printed nothing"


def test_the_feature_types_still_import_from_the_package() -> None:
    import keel.features as features

    assert features.Entity.__module__ == "keel.features.models"
    assert features.FeatureStore.__module__ == "keel.features.service"
    assert "FeatureStore" in dir(features)
    with pytest.raises(AttributeError, match="nosuch"):
        _ = features.nosuch  # type: ignore[attr-defined]
