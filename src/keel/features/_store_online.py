"""Online part of ``FeatureStore``: lookups of the latest values, pushes, usage counting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keel.features import _materialize
from keel.features._frames import Frame
from keel.features._materialize import Lookup
from keel.features._store_base import InvalidationCallback, log
from keel.features._store_definitions import DefinitionsMixin
from keel.features._support import entity_key, now_ms

__all__ = ["OnlineMixin"]

_USAGE_FLUSH_S = 60.0


class OnlineMixin(DefinitionsMixin):
    """Online reads (with a cached plan per request shape) and streaming writes."""

    def add_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Call ``callback(view, entity_keys)`` after each push (the serving cache hook)."""
        self._callbacks.append(callback)

    def remove_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Stop calling ``callback`` (from :meth:`add_invalidation_callback`); no-op if absent."""
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

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
