"""Pushed features make cached predictions stale: the callback that says which.

The serving cache tags each entry with ``entity_keys``, the join-key value of the
entity it was made for (several keys joined by ``|``). After a push, the feature store
calls its invalidation callbacks with the pushed keys; :func:`entity_invalidator` turns
those keys into entity tags for a publisher. The publisher comes from the caller
(``keel.services`` for a shared store, :class:`~keel.features.FeatureStore` for a
standalone one, both through :func:`redis_invalidator`), so this module imports
neither the composition root nor the serving cache.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from keel.features._store_base import InvalidationCallback

__all__ = ["MAX_ENTITY_EVENTS", "EntityPublisher", "entity_invalidator", "redis_invalidator"]

#: Above this many pushed entities one "drop everything" event is cheaper than one per entity.
MAX_ENTITY_EVENTS = 1000

#: ``publish(entity)`` drops the cached predictions of one entity tag; ``publish(None)``
#: drops every cached prediction.
EntityPublisher = Callable[[str | None], object]


def entity_invalidator(
    publish: EntityPublisher, *, max_entities: int = MAX_ENTITY_EVENTS
) -> InvalidationCallback:
    """A feature-store invalidation callback publishing the pushed entities' tags.

    >>> sent = []
    >>> entity_invalidator(sent.append)("usage", [{"id": 7}, {"id": 7}, {"id": 8}])
    >>> sorted(sent)
    ['7', '8']
    >>> entity_invalidator(sent.append, max_entities=1)("usage", [{"id": 1}, {"id": 2}])
    >>> sent[-1] is None
    True
    """

    def invalidate(_view: str, keys: list[dict[str, object]]) -> None:
        if len(keys) > max_entities:
            publish(None)
            return
        for entity in {"|".join(str(v) for v in key.values()) for key in keys}:
            publish(entity)

    return invalidate


def redis_invalidator(redis_url: str) -> InvalidationCallback:
    """The callback dropping pushed entities' predictions from every gateway's cache
    over Redis (the shared cache entries and each replica's in-process ones)."""
    # keel.features imports no keel.serving (tests/features/test_independence.py): the
    # event protocol is looked up at run time, as _materialize reads the prediction log.
    # keel.serving.events imports no keel.features (tests/test_layering.py), so no cycle.
    events = importlib.import_module("keel.serving.events")
    publish: EntityPublisher = events.entity_publisher(redis_url)
    return entity_invalidator(publish)
