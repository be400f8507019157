"""``FeatureStore``: definitions, offline retrieval, online serving, materialisation, skew.

The store is put together from one part per job (see ``_store_base``); this
module opens it and closes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keel.config import Settings
from keel.features._materialize import Lookup
from keel.features._retrieval import Catalog
from keel.features._store_base import InvalidationCallback
from keel.features._store_materialize import MaterializeMixin
from keel.features._store_monitoring import MonitoringMixin
from keel.features._store_offline import OfflineMixin
from keel.features._support import online_store_for
from keel.features.online import OnlineStore
from keel.store.sql.features import FeatureSql

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from keel.services import Services

__all__ = ["FeatureStore", "InvalidationCallback"]


class FeatureStore(OfflineMixin, MaterializeMixin, MonitoringMixin):
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

    def close(self) -> None:
        """Write buffered usage, close the online store (and owned services)."""
        self._flush_usage(force=True)
        if self._owned is not None:
            self._owned.close()
        elif not self._shares_online:
            self.online.close()
