"""Capture the environment a run executes in (R-TRK-04): code, interpreter, packages.

Package versions are read once per process: the modules a process imported do
not change when someone pip-installs beside it, so the first reading is the
true one. The git state is cached per working directory for
:data:`GIT_CACHE_S` seconds: a loop starting thousands of runs spawns git once,
while a long notebook session that commits between runs still records the new
commit.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import threading
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["GIT_CACHE_S", "KEY_PACKAGES", "capture_environment", "environment_hash", "git_state"]

#: How long a git reading is reused for runs started in the same directory.
GIT_CACHE_S = 10.0
_git_cache: dict[str, tuple[float, tuple[str | None, bool | None]]] = {}
_git_lock = threading.Lock()

#: Packages whose versions change model behaviour; recorded when installed.
KEY_PACKAGES = (
    "keelml",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "xgboost",
    "onnxruntime",
    "pyarrow",
    "skops",
    "torch",
)


def git_state(directory: Path | None = None) -> tuple[str | None, bool | None]:
    """``(commit sha, dirty)`` of the git work tree holding ``directory``; Nones outside git.

    Cached per directory for :data:`GIT_CACHE_S` seconds.
    """
    cwd = str(directory or Path.cwd())
    now = time.monotonic()
    with _git_lock:
        cached = _git_cache.get(cwd)
        if cached is not None and now - cached[0] < GIT_CACHE_S:
            return cached[1]
    state = _read_git_state(cwd)
    with _git_lock:
        _git_cache[cwd] = (now, state)
    return state


def _read_git_state(cwd: str) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


@cache
def _package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@cache
def _platform() -> str:
    return platform.platform()


def capture_environment(seed: int | None = None) -> dict[str, Any]:
    """Interpreter, platform, key package versions, git state and seed of this process."""
    commit, dirty = git_state()
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": _platform(),
        "packages": dict(_package_versions()),
        "git": {"commit": commit, "dirty": dirty},
        "seed": seed,
    }


def environment_hash(environment: dict[str, Any]) -> str:
    """Hash of what makes two environments behave alike: interpreter and package versions."""
    relevant = {
        "python": environment.get("python"),
        "implementation": environment.get("implementation"),
        "packages": environment.get("packages", {}),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()
