"""Feature-store fixtures: the seed's customer_account (daily) and customer_usage (hourly)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel.config import Settings
from keel.features import FeatureStore
from keel.services import Services

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"
START = pd.Timestamp("2026-01-01", tz="UTC")

DEFS_YAML = """
entities:
  - name: customer
    join_keys: [customer_id]
    value_type: int64
    description: A paying customer.
feature_views:
  - name: customer_account
    entities: [customer]
    source: {{type: file, path: {account}, timestamp_field: event_timestamp}}
    ttl: 3d
    freshness_sla: 1d
    cadence: daily
    owner: billing-team
    description: Account state from the billing DB (CDC).
    tags: {{domain: billing}}
    features:
      tenure_days: int64
      plan_type: string
      payment_method: string
      monthly_revenue: float64
      late_payment_count_30d: int64
  - name: customer_usage
    entities: [customer]
    source: {{type: file, path: {usage}}}
    ttl: 6h
    freshness_sla: 2h
    cadence: hourly
    owner: analytics
    features:
      calls_last_30d: float64
      data_usage_gb_last_30d: float64
      support_tickets_last_30d: int64
      login_count_last_7d: int64
      features_used_count: int64
feature_services:
  - name: churn_v1
    model: churn
    features: ["customer_account:*", "customer_usage:calls_last_30d"]
"""

ACCOUNT = [
    "tenure_days",
    "plan_type",
    "payment_method",
    "monthly_revenue",
    "late_payment_count_30d",
]
USAGE = [
    "calls_last_30d",
    "data_usage_gb_last_30d",
    "support_tickets_last_30d",
    "login_count_last_7d",
    "features_used_count",
]


def account_frame(customers: int, days: int, seed: int = 1) -> pd.DataFrame:
    """Daily account snapshots for ``customers`` customers."""
    rng = np.random.default_rng(seed)
    n = customers * days
    ids = np.tile(np.arange(customers, dtype=np.int64), days)
    day = np.repeat(np.arange(days), customers)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": START + pd.to_timedelta(day, unit="D"),
            "tenure_days": (day + rng.integers(0, 900, n)).astype(np.int64),
            "plan_type": rng.choice(["basic", "plus", "pro"], n),
            "payment_method": rng.choice(["card", "bank", "paypal"], n),
            "monthly_revenue": rng.gamma(2.0, 30.0, n).round(2),
            "late_payment_count_30d": rng.poisson(0.3, n).astype(np.int64),
        }
    )


def usage_frame(customers: int, hours: int, seed: int = 2) -> pd.DataFrame:
    """Hourly usage aggregates for ``customers`` customers."""
    rng = np.random.default_rng(seed)
    n = customers * hours
    ids = np.tile(np.arange(customers, dtype=np.int64), hours)
    hour = np.repeat(np.arange(hours), customers)
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": START + pd.to_timedelta(hour, unit="h"),
            "calls_last_30d": rng.gamma(3.0, 10.0, n),
            "data_usage_gb_last_30d": rng.gamma(2.0, 5.0, n),
            "support_tickets_last_30d": rng.poisson(0.5, n).astype(np.int64),
            "login_count_last_7d": rng.poisson(4, n).astype(np.int64),
            "features_used_count": rng.integers(0, 20, n).astype(np.int64),
        }
    )


@dataclass
class Seed:
    root: Path
    defs: Path
    account: pd.DataFrame
    usage: pd.DataFrame
    account_path: Path
    usage_path: Path


def write_seed(root: Path, customers: int = 50, days: int = 5) -> Seed:
    root.mkdir(parents=True, exist_ok=True)
    account = account_frame(customers, days)
    usage = usage_frame(customers, days * 24)
    account_path, usage_path = root / "customer_account.parquet", root / "customer_usage.parquet"
    account.to_parquet(account_path)
    usage.to_parquet(usage_path)
    defs = root / "features.yaml"
    # relative paths resolve against the YAML file's folder
    defs.write_text(DEFS_YAML.format(account=account_path.name, usage=usage_path.name))
    return Seed(root, defs, account, usage, account_path, usage_path)


@pytest.fixture
def seed(tmp_path: Path) -> Seed:
    return write_seed(tmp_path / "data")


@pytest.fixture
def fs(services: Services, seed: Seed) -> Iterator[FeatureStore]:
    """A feature store (SQLite and PostgreSQL metadata) with the seed applied."""
    store = FeatureStore(services)
    store.apply(seed.defs)
    yield store
    store.close()


@pytest.fixture
def redis_url() -> str:
    """Real Redis; skips locally when unreachable, fails under CI=true."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {exc}")
    return REDIS_URL


@pytest.fixture
def redis_settings(tmp_path: Path, redis_url: str) -> Settings:
    return Settings(home=tmp_path / "keel-redis", redis_url=redis_url)


@pytest.fixture
def lite_fs(sqlite_settings: Settings, seed: Seed) -> Iterator[FeatureStore]:
    """The seed on SQLite metadata only: for retrieval rules that do not touch the database."""
    store = FeatureStore(sqlite_settings)
    store.apply(seed.defs)
    yield store
    store.close()
