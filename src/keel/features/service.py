"""``FeatureStore``: definitions, offline retrieval, online serving, materialisation, skew."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from keel.config import Settings
from keel.errors import InvalidInput, NotFound
from keel.features import _materialize
from keel.features._frames import Frame
from keel.features._materialize import Lookup
from keel.features._retrieval import (
    Catalog,
    attach,
    historical,
    historical_to_parquet,
    resolve,
)
from keel.features._support import (
    entity_key,
    freshness_of,
    merge_definitions,
    now_ms,
    online_store_for,
    to_us,
    unused_of,
)
from keel.features.definitions import (
    Definitions,
    as_definitions,
    build_plan,
    load_yaml,
    parse_definition,
    plan_writes,
    validate_references,
)
from keel.features.models import (
    Entity,
    FeatureService,
    FeatureView,
    Freshness,
    Plan,
    StoredDefinition,
    UnusedFeature,
)
from keel.features.offline import Selection
from keel.features.online import OnlineStore
from keel.features.skew import SkewReport, compare_skew
from keel.store.sql.features import FeatureSql

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from keel.services import Services

__all__ = ["FeatureStore", "InvalidationCallback"]

log = logging.getLogger("keel.features")

#: Called after a push with the view name and the join-key dicts of the updated entities.
InvalidationCallback = Callable[[str, list[dict[str, Any]]], None]
DefinitionsInput = Definitions | Iterable[Entity | FeatureView | FeatureService] | str | Path
_USAGE_FLUSH_S = 60.0


class FeatureStore:
    """keel's feature store.

    ``FeatureStore(services)`` shares an open :class:`~keel.services.Services`;
    ``FeatureStore(settings)`` opens its own (close it with :meth:`close`).

    Examples
    --------
    >>> store = FeatureStore(Settings())                              # doctest: +SKIP
    >>> store.apply("features.yaml")                                  # doctest: +SKIP
    >>> store.get_online_features([{"customer_id": 7}], ["customer_account:tenure_days"])
    ... # doctest: +SKIP
    """

    def __init__(
        self,
        source: Services | Settings | None = None,
        *,
        engine: Engine | None = None,
        online: OnlineStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._owned: Services | None = None
        shared: FeatureStore | None = None
        if engine is not None:
            if not isinstance(source, Settings):
                raise TypeError("FeatureStore(settings, engine=...) needs Settings")
            settings = source
        else:
            if source is None or isinstance(source, Settings):
                from keel.services import open_services

                self._owned = open_services(source or Settings())
                services = self._owned
            else:
                services = source
            settings, engine = services.settings, services.store.engine
            shared = getattr(services, "features", None)
        self.settings = settings
        self.sql = FeatureSql(engine)
        self.clock = clock
        self.online: OnlineStore = online or (
            shared.online if shared else online_store_for(settings)
        )
        self._callbacks: list[InvalidationCallback] = shared._callbacks if shared else []
        self._shares_online = shared is not None
        self._catalog: Catalog | None = None
        self._catalog_at = 0.0
        self._usage: set[tuple[str, str]] = set()
        self._plans: dict[tuple[Any, bool], tuple[Catalog, list[Lookup]]] = {}
        self._usage_at = clock()
        self._lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Write buffered usage, close the online store (and owned services)."""
        self._flush_usage(force=True)
        if self._owned is not None:
            self._owned.close()
        elif not self._shares_online:
            self.online.close()

    def add_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Call ``callback(view, entity_keys)`` after each push (the serving cache hook)."""
        self._callbacks.append(callback)

    # ---- definitions -------------------------------------------------------------------
    def _definitions(self, definitions: DefinitionsInput) -> Definitions:
        if isinstance(definitions, str | Path):
            return load_yaml(definitions)
        return as_definitions(definitions)

    def plan(self, definitions: DefinitionsInput, *, prune: bool = True) -> Plan:
        """What :meth:`apply` would change, without changing anything.

        ``prune`` (default) treats ``definitions`` as the whole desired state:
        live definitions missing from it are planned for removal.
        """
        desired = self._definitions(definitions)
        current = self.sql.latest_definitions(include_removed=True)
        merged = desired
        if not prune:
            merged = merge_definitions(desired, current)
        validate_references(merged)
        return build_plan(desired, current, prune=prune)

    def apply(self, definitions: DefinitionsInput, *, prune: bool = True) -> Plan:
        """Store each new or changed definition as a new version; returns the plan applied.

        All or nothing: one transaction. Sources are not read here; a missing
        file fails at retrieval / materialisation with the column or path.
        """
        desired = self._definitions(definitions)
        plan = self.plan(desired, prune=prune)
        writes, removals, new_features = plan_writes(plan, desired)
        if writes or removals:
            self.sql.apply_definitions(writes, removals, new_features, now_ms())
        self._catalog = None
        return plan

    def catalog(self) -> Catalog:
        """The live definitions, re-read at most every ``features_registry_refresh_s``."""
        now = self.clock()
        catalog = self._catalog
        if catalog is None or now - self._catalog_at > self.settings.features_registry_refresh_s:
            live = self.sql.latest_definitions()
            objects = [parse_definition(d.kind, d.spec) for d in live]
            catalog = Catalog(
                entities={o.name: o for o in objects if isinstance(o, Entity)},
                views={o.name: o for o in objects if isinstance(o, FeatureView)},
                services={o.name: o for o in objects if isinstance(o, FeatureService)},
            )
            self._catalog, self._catalog_at = catalog, now
        return catalog

    def list_definitions(self, kind: str | None = None) -> list[StoredDefinition]:
        """Newest live version of every definition (of one kind when given)."""
        if kind is not None and kind not in ("entity", "feature_view", "feature_service"):
            raise InvalidInput("kind must be entity, feature_view or feature_service", field="kind")
        return [d for d in self.sql.latest_definitions() if kind is None or d.kind == kind]

    def history(self, name: str) -> list[StoredDefinition]:
        """Every version of the definition called ``name`` (any kind), oldest first."""
        for kind in ("feature_view", "entity", "feature_service"):
            versions = self.sql.definition_history(kind, name)
            if versions:
                return versions
        raise NotFound(f"no feature definition named {name!r}", field="name")

    def get_view(self, name: str) -> FeatureView:
        """A live feature view (``NotFound`` otherwise)."""
        view = self.catalog().views.get(name) or self._fresh().views.get(name)
        if view is None:
            raise NotFound(f"unknown feature view {name!r}", field="view")
        return view

    def _fresh(self) -> Catalog:
        self._catalog = None
        return self.catalog()

    def dependent_models(self, view: str, feature: str | None = None) -> list[str]:
        """Models whose feature service reads ``view`` (or ``view:feature``)."""
        models = set()
        for service in self.catalog().services.values():
            for ref in service.features:
                v, _, f = ref.partition(":")
                if v == view and (feature is None or f in ("*", feature)) and service.model:
                    models.add(service.model)
        return sorted(models)

    # ---- offline -----------------------------------------------------------------------
    def get_historical_features(
        self,
        entity_df: Frame,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
        as_arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """Point-in-time correct features for each entity row (see docs/features.md).

        ``entity_df`` holds the join keys and ``timestamp_column``; the result
        is ``entity_df`` unchanged plus one column per feature, rows in the same
        order. ``features`` is ``["view:feature", "view:*"]`` or a feature
        service name.
        """
        catalog, selections = self._resolve(features, full_names)
        table = historical(
            catalog,
            entity_df,
            selections,
            timestamp_column=timestamp_column,
            memory_limit=self.settings.features_duckdb_memory_limit,
            temp_dir=self.settings.home / "tmp" / "duckdb",
            threads=self.settings.features_duckdb_threads,
        )
        pairs = [(s.view.name, f) for s in selections for f in s.features]
        self.sql.record_usage(pairs, "offline", int(self.clock() * 1000))
        return attach(entity_df, table, as_arrow)

    def write_historical_features(
        self,
        entity_path: str | Path,
        features: Sequence[str] | str,
        destination: str | Path,
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
    ) -> int:
        """:meth:`get_historical_features` from a Parquet file to a Parquet file; rows written.

        For entity sets larger than memory: DuckDB streams and spills, Python
        never holds the rows. Output rows are in the entity file's order.
        """
        catalog, selections = self._resolve(features, full_names)
        written = historical_to_parquet(
            catalog,
            Path(entity_path),
            Path(destination),
            selections,
            timestamp_column=timestamp_column,
            memory_limit=self.settings.features_duckdb_memory_limit,
            temp_dir=self.settings.home / "tmp" / "duckdb",
            threads=self.settings.features_duckdb_threads,
        )
        pairs = [(s.view.name, f) for s in selections for f in s.features]
        self.sql.record_usage(pairs, "offline", int(self.clock() * 1000))
        return written

    # ---- online ------------------------------------------------------------------------
    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str] | str,
        *,
        full_names: bool = False,
    ) -> list[dict[str, Any]]:
        """Latest values for each entity row: the row's keys plus one entry per feature.

        A value older than its view's TTL, or never materialised, is None.
        """
        plan = self._online_plan(features, full_names)
        rows = [dict(r) for r in entity_rows]
        now_us = int(self.clock() * 1_000_000)
        for layout, ttl_us, columns, positions in plan:
            keys = [entity_key(row, i, layout.keys) for i, row in enumerate(rows)]
            found = self.online.read(layout, keys)
            for row, hit in zip(rows, found, strict=True):
                if hit is None or (ttl_us and now_us - hit[0] > ttl_us):
                    for column in columns:
                        row[column] = None
                else:
                    values = hit[1]
                    for column, pos in zip(columns, positions, strict=True):
                        row[column] = values[pos]
        self._flush_usage()
        return rows

    def _online_plan(self, features: Sequence[str] | str, full_names: bool) -> list[Lookup]:
        """What to read per view, cached per request shape while the catalog stands."""
        shape = (features if isinstance(features, str) else tuple(features), full_names)
        catalog = self.catalog()
        cached = self._plans.get(shape)
        if cached is not None and cached[0] is catalog:
            plan = cached[1]
        else:
            catalog, selections = self._resolve(features, full_names)
            plan = _materialize.lookups(selections, catalog.entities)
            if len(self._plans) > 1024:
                self._plans.clear()
            self._plans[shape] = (catalog, plan)
        for layout, _, _, positions in plan:
            self._usage.update((layout.view, layout.features[p][0]) for p in positions)
        return plan

    def _resolve(
        self, features: Sequence[str] | str, full_names: bool
    ) -> tuple[Catalog, list[Selection]]:
        catalog = self.catalog()
        try:
            return catalog, resolve(catalog, features, full_names=full_names)
        except NotFound:
            # Perhaps applied by another process since the cached copy was read.
            catalog = self._fresh()
            return catalog, resolve(catalog, features, full_names=full_names)

    def _flush_usage(self, *, force: bool = False) -> None:
        # Online usage is buffered: a database write per lookup would cost more than the lookup.
        now = self.clock()
        if not self._usage or (not force and now - self._usage_at < _USAGE_FLUSH_S):
            return
        with self._lock:
            pairs, self._usage = self._usage, set()
            self._usage_at = now
        self.sql.record_usage(sorted(pairs), "online", int(now * 1000))

    def push(self, view: str, rows: Frame) -> int:
        """Write rows (join keys, the source's timestamp column, every feature) online now.

        Returns the rows written; then calls the invalidation callbacks with the
        updated entities' keys. Older event times never overwrite newer ones.
        """
        definition = self.get_view(view)
        catalog = self.catalog()
        layout = _materialize.layout(definition, catalog.entities)
        written, keys = _materialize.push_rows(self.online, definition, layout, rows)
        self.sql.record_push(view, now_ms(), written)
        for callback in list(self._callbacks):
            try:
                callback(view, keys)
            except Exception:  # a failing listener must not fail an acknowledged push
                log.exception("invalidation callback failed for view %s", view)
        return written

    def materialize(
        self,
        start: datetime | str,
        end: datetime | str,
        views: Sequence[str] | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, int]:
        """Copy the latest value per entity with event time in ``[start, end]`` online.

        Returns rows written per view; ``progress(view, done, total)`` is called per batch.
        """
        start_us, end_us = to_us(start, "start"), to_us(end, "end")
        if start_us > end_us:
            raise InvalidInput("start must not be after end", field="start")
        return self._materialize({v.name: start_us for v in self._views(views)}, end_us, progress)

    def materialize_incremental(
        self,
        end: datetime | str,
        views: Sequence[str] | None = None,
        *,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, int]:
        """Materialise each view from where the last run ended (first run: ``end - ttl``)."""
        end_us = to_us(end, "end")
        records = self.sql.materializations()
        starts = {}
        for view in self._views(views):
            record = records.get(view.name)
            if record and record.materialized_until_ms is not None:
                starts[view.name] = record.materialized_until_ms * 1000
            else:
                starts[view.name] = end_us - view.ttl * 1_000_000 if view.ttl else -(2**62)
        return self._materialize(starts, end_us, progress)

    def _views(self, names: Sequence[str] | None) -> list[FeatureView]:
        catalog = self._fresh()
        if names is None:
            return [v for v in catalog.views.values() if v.online]
        unknown = [n for n in names if n not in catalog.views]
        if unknown:
            raise NotFound(f"unknown feature views: {', '.join(unknown)}", field="views")
        return [catalog.views[n] for n in names]

    def _materialize(
        self,
        starts: dict[str, int],
        end_us: int,
        progress: Callable[[str, int, int], None] | None,
    ) -> dict[str, int]:
        catalog = self.catalog()
        written: dict[str, int] = {}
        for name, start_us in starts.items():
            view = catalog.views[name]
            written[name] = _materialize.materialize_view(
                self.online,
                view,
                catalog.entities,
                start_us,
                end_us,
                memory_limit=self.settings.features_duckdb_memory_limit,
                temp_dir=self.settings.home / "tmp" / "duckdb",
                threads=self.settings.features_duckdb_threads,
                progress=progress,
            )
            self.sql.record_materialization(name, end_us // 1000, now_ms(), written[name])
        return written

    # ---- monitoring --------------------------------------------------------------------
    def freshness(self, views: Sequence[str] | None = None) -> list[Freshness]:
        """Per view: how far it is materialised, when it was written, age vs its SLA."""
        chosen = self._views(views) if views else list(self._fresh().views.values())
        return freshness_of(chosen, self.sql.materializations(), int(self.clock() * 1000))

    def unused_features(self, *, days: int | None = None) -> list[UnusedFeature]:
        """Live features not read offline or online for ``days`` (default: the setting, 90)."""
        self._flush_usage(force=True)
        window = days if days is not None else self.settings.features_deprecate_after_days
        cutoff = int(self.clock() * 1000) - window * 86_400_000
        return unused_of(
            self._fresh().views.values(), self.sql.usage(), cutoff, self.dependent_models
        )

    def check_skew(
        self,
        offline: Frame,
        served: Frame,
        features: Sequence[str] | None = None,
        *,
        ks_threshold: float | None = None,
        psi_threshold: float | None = None,
    ) -> SkewReport:
        """:func:`~keel.features.skew.compare_skew` with the configured thresholds."""
        s = self.settings
        return compare_skew(
            offline,
            served,
            features,
            ks_threshold=ks_threshold if ks_threshold is not None else s.features_skew_ks_threshold,
            psi_threshold=(
                psi_threshold if psi_threshold is not None else s.features_skew_psi_threshold
            ),
            null_rate_threshold=s.features_skew_null_rate_threshold,
        )

    def served_features(
        self, model: str, version: int | None, start: Any = None, end: Any = None
    ) -> pa.Table:
        """Feature values the gateway served (prediction log), one column per feature."""
        return _materialize.served_from_prediction_log(self.settings, model, version, start, end)
