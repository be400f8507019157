"""Materialisation part of ``FeatureStore``: offline → online, by window or incrementally."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from keel.errors import InvalidInput
from keel.features import _materialize
from keel.features._store_definitions import DefinitionsMixin
from keel.features._support import now_ms, to_us

__all__ = ["MaterializeMixin"]


class MaterializeMixin(DefinitionsMixin):
    """``materialize`` and ``materialize_incremental``."""

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
                **self._duckdb(),
                progress=progress,
            )
            self.sql.record_materialization(name, end_us // 1000, now_ms(), written[name])
        return written
