"""Capture the environment a run executes in (R-TRK-04): code, interpreter, packages."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["KEY_PACKAGES", "capture_environment", "environment_hash", "git_state"]

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
    """``(commit sha, dirty)`` of the git work tree holding ``directory``; Nones outside git."""
    cwd = str(directory or Path.cwd())
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


def _package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def capture_environment(seed: int | None = None) -> dict[str, Any]:
    """Interpreter, platform, key package versions, git state and seed of this process."""
    commit, dirty = git_state()
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": _package_versions(),
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
