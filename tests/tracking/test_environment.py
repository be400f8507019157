"""Environment capture: git commit and dirty flag, package versions, hash."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from keel.tracking import environment
from keel.tracking.environment import capture_environment, environment_hash, git_state


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("print('v1')\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "commit", "-qm", "v1")
    return tmp_path


def test_git_state_reads_commit_and_dirty_flag(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "GIT_CACHE_S", 0.0)
    assert git_state(repo) == (_git(repo, "rev-parse", "HEAD"), False)
    (repo / "train.py").write_text("print('v2')\n")
    assert git_state(repo)[1] is True


def test_git_state_is_reused_within_the_cache_window(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(environment, "GIT_CACHE_S", 3600.0)
    first = git_state(repo)
    (repo / "train.py").write_text("print('v2')\n")
    _git(repo, "commit", "-qam", "v2")
    assert git_state(repo) == first  # cached reading
    monkeypatch.setattr(environment, "GIT_CACHE_S", 0.0)
    assert git_state(repo)[0] == _git(repo, "rev-parse", "HEAD") != first[0]


def test_outside_git_there_is_no_commit(tmp_path: Path) -> None:
    assert git_state(tmp_path) == (None, None)


def test_capture_records_packages_and_seed() -> None:
    env = capture_environment(seed=42)
    assert env["packages"]["numpy"] == np.__version__ and env["seed"] == 42
    assert env["python"].count(".") == 2


def test_environment_hash_ignores_git_and_seed_but_not_packages() -> None:
    env = capture_environment(seed=1)
    same = {**env, "seed": 2, "git": {"commit": "x", "dirty": True}}
    assert environment_hash(env) == environment_hash(same)
    other = {**env, "packages": {**env["packages"], "numpy": "0.0.1"}}
    assert environment_hash(other) != environment_hash(env)
