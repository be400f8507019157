"""Serving fixtures: the telco churn table, LightGBM models on it, a real Redis, live gateways.

Tests that need Redis use ``KEEL_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
Under ``CI=true`` an unreachable Redis fails the run instead of skipping.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from tests.conftest import serve_in_thread, with_migrated_database

from keel.api import create_app
from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.services import open_services

# The misbehaving models of serving_faults.py are loaded by class path, so their module must
# import under one stable name: put this directory on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass
class Churn:
    """The churn table split, its feature names and two fitted LightGBM classifiers."""

    train: pd.DataFrame
    test: pd.DataFrame
    features: list[str]
    small: Any  # 20 trees
    large: Any  # 60 trees, other leaves: different predictions

    def rows(self, n: int, start: int = 0) -> list[dict[str, Any]]:
        """Test rows as JSON-ready dicts (categories as strings)."""
        frame = self.test[self.features].iloc[start : start + n]
        return [
            {k: (str(v) if isinstance(v, str) else float(v)) for k, v in row.items()}
            for row in frame.astype(object).to_dict("records")
        ]


@pytest.fixture(scope="session")
def churn() -> Churn:
    """Real data (7,043 telco customers) and real models, trained once per session."""
    from lightgbm import LGBMClassifier

    train, _valid, test = split(load_churn(), seed=7)
    features = [c for c in train.columns if c not in (TARGET, "customer_id")]
    small = LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1, random_state=1)
    large = LGBMClassifier(n_estimators=60, num_leaves=31, verbose=-1, random_state=2)
    small.fit(train[features], train[TARGET])
    large.fit(train[features], train[TARGET])
    return Churn(train, test, features, small, large)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis; skips locally when there is none, fails under CI=true."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means "not reachable"
        message = f"Redis at {REDIS_URL} unreachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


def unique(prefix: str) -> str:
    """A model name no other test (or earlier run against the same Redis) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def register(settings: Settings, name: str, model: Any, example: Any) -> int:
    """Log ``model`` in a run and register it as the next version of ``name``."""
    client = Client(settings=settings)
    try:
        with client.start_run("serving-tests", capture_env=False) as run:
            version = run.log_model(model, registered_name=name, input_example=example)
        return int(version.version)  # type: ignore[union-attr]
    finally:
        client.close()


def set_alias(settings: Settings, name: str, alias: str, version: int) -> None:
    """Point ``name@alias`` at ``version`` through the registry."""
    client = Client(settings=settings)
    try:
        client.set_alias(name, alias, version)
    finally:
        client.close()


@dataclass
class Live:
    """A running keel server and its app (its gateway is ``app.state.gateway``)."""

    url: str
    app: FastAPI

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway


@contextmanager
def live_gateway(settings: Settings) -> Iterator[Live]:
    """uvicorn on a free port serving ``create_app`` over ``settings``."""
    services = open_services(settings)
    app = create_app(services=services)
    try:
        with serve_in_thread(app) as url:
            yield Live(url, app)
    finally:
        services.close()


def test_settings(home: Path, **overrides: Any) -> Settings:
    """Settings on ``home`` with test-friendly serving values (no rate limit, fast log)."""
    values: dict[str, Any] = {
        "home": home / "keel",
        "serving_rate_limit": "",
        "prediction_log_flush_interval_s": 0.05,
        "prediction_log_fsync": False,
        # serving_faults' misbehaving models store themselves: their classes must be trusted
        "trusted_model_classes": ",".join(
            f"serving_faults:{name}"
            for name in (
                "Raising",
                "Switchable",
                "Slow",
                "Sleepy",
                "BrokenOnLoad",
                "Miscounting",
                "Overcounting",
                "Labelling",
            )
        ),
    }
    values.update(overrides)
    if values.get("database_url") is None:
        with_migrated_database(values["home"])
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a temporary home, with test-friendly serving overrides."""
    return lambda **overrides: test_settings(tmp_path, **overrides)
