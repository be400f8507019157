"""A bad KEEL_* setting at startup is one line naming the setting and its bounds, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def keel(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script's entry point (``main``) in a fresh process."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    environ.update(KEEL_HOME=str(home), **env)
    code = "import sys; from keel.cli.main import main; sys.argv[0] = 'keel'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=environ, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["server", "--port", "0"],
            {"KEEL_SERVING_MAX_BODY_BYTES": "600"},
            "KEEL_SERVING_MAX_BODY_BYTES=600: must be >= 1024",
        ),
        (["models", "list"], {"KEEL_PORT": "abc"}, "KEEL_PORT=abc: must be >= 0 and <= 65535"),
        # these three died with a traceback from SQLAlchemy or redis-py
        (["models", "list"], {"KEEL_DATABASE_URL": "foo"}, "KEEL_DATABASE_URL=foo: not a"),
        (
            ["models", "list"],
            {"KEEL_DATABASE_URL": "mysql://u@h/db"},
            "KEEL_DATABASE_URL=mysql://u@h/db: keel keeps its metadata in SQLite or PostgreSQL",
        ),
        (
            ["models", "list"],
            {"KEEL_DATABASE_URL": "postgres://u@h/db"},
            "KEEL_DATABASE_URL=postgres://u@h/db: keel keeps its metadata in SQLite or",
        ),
        (
            ["server", "--port", "0"],
            {"KEEL_REDIS_URL": "localhost:6379"},
            "KEEL_REDIS_URL=localhost:6379: must start with redis://, rediss:// or unix://",
        ),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    """#15.24: ``KEEL_SERVING_MAX_BODY_BYTES=600 keel server`` died with a traceback."""
    result = keel(tmp_path, *args, **env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
