"""The real validators behind ``<!-- check: KIND -->`` markers (tests/docs/_blocks.py)."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["run_check"]


def _deployment_policy(text: str, home: Path) -> None:
    from keel.deploy import load_policy

    load_policy(text)


def _gate_policy(text: str, home: Path) -> None:
    from keel._documents import load_document
    from keel.automation.gates import parse_policy

    parse_policy(load_document(text, field="policy"))


def _trigger(text: str, home: Path) -> None:
    from keel.automation.triggers import parse_trigger

    parse_trigger(text)


def _retrain_job(text: str, home: Path) -> None:
    from keel._documents import load_document
    from keel.automation.retrain import parse_job_args

    parse_job_args(load_document(text, field="args"))


def _feature_repo(text: str, home: Path) -> None:
    from keel.features.definitions import load_yaml

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=".", delete=False) as file:
        file.write(text)
    try:
        load_yaml(file.name)
    finally:
        Path(file.name).unlink()


def _monitor_spec(text: str, home: Path) -> None:
    """A ``keel monitor create NAME --file`` document: MonitorSpec fields without the name."""
    from keel._documents import load_document
    from keel.monitoring.models import MonitorSpec

    MonitorSpec.model_validate({"name": "docs-check", **load_document(text, field="spec")})


def _sqlite(text: str, home: Path) -> None:
    """The SQL script on the file's KEEL_HOME database (the embedded SQLite store)."""
    connection = sqlite3.connect(home / "keel.db", isolation_level=None)
    try:
        connection.executescript(text)
    finally:
        connection.close()


_CHECKS: dict[str, Callable[[str, Path], None]] = {
    "deployment-policy": _deployment_policy,
    "gate-policy": _gate_policy,
    "trigger": _trigger,
    "retrain-job": _retrain_job,
    "feature-repo": _feature_repo,
    "monitor-spec": _monitor_spec,
    "sqlite": _sqlite,
}


def run_check(kind: str, text: str, home: Path) -> None:
    """Validate ``text`` as ``kind``; the validator's own error (naming the field) otherwise."""
    _CHECKS[kind](text, home)
