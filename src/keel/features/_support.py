"""Helpers of the feature store service: times, entity keys, freshness, unused features."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from keel.config import Settings
from keel.errors import InvalidInput
from keel.features.definitions import Definitions, as_definitions, parse_definition
from keel.features.models import (
    FeatureView,
    Freshness,
    MaterializationRecord,
    StoredDefinition,
    UnusedFeature,
    UsageRecord,
    ValueType,
)
from keel.features.online import OnlineStore, RedisOnlineStore, SqliteOnlineStore

__all__ = [
    "entity_key",
    "freshness_of",
    "merge_definitions",
    "now_ms",
    "online_store_for",
    "to_us",
    "unused_of",
]


def now_ms() -> int:
    return int(time.time() * 1000)


def to_us(value: datetime | str, field: str) -> int:
    """Epoch microseconds of a datetime or ISO string; naive means UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInput(f"{field} is not an ISO time: {value!r}", field=field) from exc
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} must be a datetime", field=field)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def entity_key(
    row: Mapping[str, Any], index: int, keys: Sequence[tuple[str, ValueType]]
) -> tuple[Any, ...]:
    values = []
    for name, dtype in keys:
        if name not in row:
            raise InvalidInput(
                f"entity_rows[{index}] has no {name!r}", field=f"entity_rows[{index}].{name}"
            )
        value = row[name]
        ok = (
            isinstance(value, str)
            if dtype is ValueType.STRING
            else isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok:
            raise InvalidInput(
                f"entity_rows[{index}].{name} must be {dtype}, got {type(value).__name__}",
                field=f"entity_rows[{index}].{name}",
            )
        values.append(value)
    return tuple(values)


def merge_definitions(desired: Definitions, current: Sequence[StoredDefinition]) -> Definitions:
    """``desired`` plus the live stored definitions it does not replace."""
    names = {(o.kind, o.name) for o in desired.objects()}
    kept = [
        parse_definition(d.kind, d.spec)
        for d in current
        if d.removed_at_ms is None and (d.kind, d.name) not in names
    ]
    return as_definitions([*desired.objects(), *kept])


def online_store_for(settings: Settings) -> OnlineStore:
    choice = settings.features_online_store
    if choice == "redis" or (choice == "auto" and settings.redis_url):
        if not settings.redis_url:
            raise InvalidInput(
                "KEEL_FEATURES_ONLINE_STORE=redis needs KEEL_REDIS_URL", field="redis_url"
            )
        return RedisOnlineStore(settings.redis_url)
    path = settings.features_online_path or settings.home / "features" / "online.db"
    return SqliteOnlineStore(path, settings.sqlite_busy_timeout_ms)


def freshness_of(
    views: Iterable[FeatureView], records: Mapping[str, MaterializationRecord], now: int
) -> list[Freshness]:
    """Freshness of each view at ``now`` (epoch ms)."""
    out = []
    for view in views:
        record = records.get(view.name)
        until = record.materialized_until_ms if record else None
        pushed = record.last_push_at_ms if record else None
        newest = max((t for t in (until, pushed) if t is not None), default=None)
        age = (now - newest) / 1000 if newest is not None else None
        sla = view.freshness_sla
        out.append(
            Freshness(
                view=view.name,
                cadence=view.cadence,
                materialized_until_ms=until,
                last_materialized_at_ms=record.last_materialized_at_ms if record else None,
                last_push_at_ms=pushed,
                rows_written=record.rows_written if record else 0,
                age_s=age,
                sla_s=sla,
                is_stale=None if sla is None else (age is None or age > sla),
            )
        )
    return out


def unused_of(
    views: Iterable[FeatureView],
    usage: Iterable[UsageRecord],
    cutoff_ms: int,
    dependents: Callable[[str, str], list[str]],
) -> list[UnusedFeature]:
    """Features whose last read (or, never read, their definition) is before ``cutoff_ms``."""
    by_key = {(u.view, u.feature): u for u in usage}
    out = []
    for view in views:
        for feature in view.features:
            record = by_key.get((view.name, feature.name))
            if record is None:
                continue
            used = [t for t in (record.last_offline_ms, record.last_online_ms) if t]
            last = max(used) if used else None
            if (last or record.defined_at_ms) < cutoff_ms:
                out.append(
                    UnusedFeature(
                        view=view.name,
                        feature=feature.name,
                        last_used_ms=last,
                        defined_at_ms=record.defined_at_ms,
                        dependent_models=dependents(view.name, feature.name),
                    )
                )
    return out
