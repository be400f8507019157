"""``FeatureStore``: definitions, offline retrieval, online serving, materialisation, skew.

The store is put together from one part per job (see ``_store_base``); this
module opens it and closes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from keel.config import Settings
from keel.features._materialize import Lookup
from keel.features._retrieval import Catalog
from keel.features._store_base import InvalidationCallback
from keel.features._store_materialize import MaterializeMixin
from keel.features._store_monitoring import MonitoringMixin
from keel.features._store_offline import OfflineMixin
from keel.features._support import online_store_for
from keel.features.invalidation import redis_invalidator
from keel.features.online import OnlineStore
from keel.store.sql.features import FeatureSql
from keel.store.sql.migrate import open_engine

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["FeatureStore", "InvalidationCallback"]


class _HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


class SharedServices(Protocol):
    """What ``FeatureStore(services)`` reads of :class:`keel.services.Services` (named by
    shape, not imported: the composition root imports this package, not the reverse)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> _HasEngine: ...


class FeatureStore(OfflineMixin, MaterializeMixin, MonitoringMixin):
    """keel's feature store.

    ``FeatureStore(services)`` shares an open :class:`~keel.services.Services`;
    ``FeatureStore(settings)`` opens its own database engine (schema upgraded to head),
    online store and, with ``KEEL_REDIS_URL``, the push invalidation of the serving
    cache; close it with :meth:`close`.

    Examples
    --------
    >>> store = FeatureStore(Settings())                              # doctest: +SKIP
    >>> store.apply("features.yaml")                                  # doctest: +SKIP
    >>> store.get_online_features([{"customer_id": 7}], ["customer_account:tenure_days"])
    ... # doctest: +SKIP
    """

    def __init__(
        self,
        source: SharedServices | Settings | None = None,
        *,
        engine: Engine | None = None,
        online: OnlineStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Standalone, the store opens only what it needs (engine, online store, the Redis
        # invalidation): it never opens keel.services, which imports this package (#15.29).
        self._owned_engine: Engine | None = None
        shared: FeatureStore | None = None
        if engine is not None:
            if not isinstance(source, Settings):
                raise TypeError("FeatureStore(settings, engine=...) needs Settings")
            settings = source
        elif source is None or isinstance(source, Settings):
            settings = source or Settings()
            engine = self._owned_engine = open_engine(settings)
        else:  # an open Services (duck-typed: settings, store.engine, features)
            settings, engine = source.settings, source.store.engine
            shared = getattr(source, "features", None)
        self.settings = settings
        self.sql = FeatureSql(engine)
        self.clock = clock
        try:
            self.online: OnlineStore = online or (
                shared.online if shared else online_store_for(settings)
            )
        except BaseException:
            # a refused online store: the engine opened above is disposed now, not left to
            # the garbage collector with its pooled connection (psycopg's ResourceWarning)
            if self._owned_engine is not None:
                self._owned_engine.dispose()
            raise
        self._callbacks: list[InvalidationCallback] = shared._callbacks if shared else []
        if self._owned_engine is not None and settings.redis_url:
            # what keel.services wires for the shared store: a push drops the pushed
            # entities' cached predictions on every gateway
            self._callbacks.append(redis_invalidator(settings.redis_url))
        self._shares_online = shared is not None
        self._catalog: Catalog | None = None
        self._catalog_at = 0.0
        self._usage: set[tuple[str, str]] = set()
        self._plans: dict[tuple[Any, bool], tuple[Catalog, list[Lookup]]] = {}
        self._usage_at = clock()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Write buffered usage, close the online store unless shared (and an own engine);
        both are closed even when the write fails, whose error is then raised."""
        try:
            self._flush_usage(force=True)
        finally:
            if not self._shares_online:
                self.online.close()
            if self._owned_engine is not None:
                self._owned_engine.dispose()
