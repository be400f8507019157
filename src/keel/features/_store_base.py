"""What the parts of :class:`~keel.features.FeatureStore` share: its state and DuckDB limits.

``FeatureStore`` (``service.py``) is put together from one part per job:
definitions (``_store_definitions``), point-in-time retrieval
(``_store_offline``), online lookups and pushes (``_store_online``),
materialisation (``_store_materialize``) and monitoring (``_store_monitoring``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from keel.config import Settings
from keel.features._materialize import Lookup
from keel.features._retrieval import Catalog
from keel.features.online import OnlineStore
from keel.store.sql.features import FeatureSql

__all__ = ["InvalidationCallback", "StoreBase"]

log = logging.getLogger("keel.features")

#: Called after a push with the view name and the join-key dicts of the updated entities.
InvalidationCallback = Callable[[str, list[dict[str, Any]]], None]


class StoreBase:
    """The attributes ``FeatureStore.__init__`` sets, typed once for every part."""

    settings: Settings
    sql: FeatureSql
    clock: Callable[[], float]
    online: OnlineStore
    _callbacks: list[InvalidationCallback]
    _catalog: Catalog | None
    _catalog_at: float
    _usage: set[tuple[str, str]]
    _plans: dict[tuple[Any, bool], tuple[Catalog, list[Lookup]]]
    _usage_at: float
    _lock: threading.Lock

    def _duckdb(self) -> dict[str, Any]:
        """``memory_limit``, ``temp_dir`` and ``threads`` for DuckDB work, from the settings."""
        return dict(
            memory_limit=self.settings.features_duckdb_memory_limit,
            temp_dir=self.settings.home / "tmp" / "duckdb",
            threads=self.settings.features_duckdb_threads,
        )
