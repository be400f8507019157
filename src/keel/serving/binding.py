"""Feature bindings: which online features a served model version reads, and how.

:func:`build_binding` works out, from the feature services naming a model and the
version's signature, which ``view:feature`` references to fetch, under which model
column, and which join keys each instance must name; :class:`OnlineFeatureSource` is
what the gateway uses of the feature store. ``enrich.FeatureBinder`` keeps the
bindings current and fetches for them (see ``enrich`` for the rules).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "PENDING",
    "FeatureBinding",
    "InvalidationCallback",
    "OnlineFeatureSource",
    "build_binding",
    "entity_tags",
]

log = logging.getLogger("keel.serving")

InvalidationCallback = Callable[[str, list[dict[str, Any]]], None]


class OnlineFeatureSource(Protocol):
    """What the gateway uses of :class:`keel.features.FeatureStore`."""

    def catalog(self) -> Any:
        """The live definitions (may read the metadata database)."""
        ...

    def cached_catalog(self) -> Any | None:
        """The live definitions if known without reading, else None."""
        ...

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str] | str,
        *,
        full_names: bool = False,
    ) -> list[dict[str, Any]]:
        """Latest values per entity row (None when unknown or older than the TTL)."""
        ...

    def add_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Call ``callback(view, entity_keys)`` after each push."""
        ...

    def remove_invalidation_callback(self, callback: InvalidationCallback) -> None:
        """Stop calling ``callback``."""
        ...


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


#: ``PoolEntry.binding`` of an entry whose binding is not resolved yet (not None: the
#: fast paths leave it to the full path, which resolves it).
PENDING: Any = _Pending()


@dataclass(frozen=True, slots=True)
class FeatureBinding:
    """How one model version reads online features."""

    model: str
    services: tuple[str, ...]  # the feature services naming the model
    refs: tuple[str, ...]  # "view:feature" fetched, one per entry of ``fetched``
    fetched: tuple[tuple[str, str], ...]  # (result column "view__feature", model column)
    keys: tuple[tuple[str, str], ...]  # (join key, "int64" or "string"), in view order
    drop: tuple[str, ...]  # join keys that are not model inputs: removed before validation


def build_binding(
    model: str, columns: Sequence[str] | None, inputs: tuple[Any, Any, Any]
) -> FeatureBinding | None:
    """The binding of a version with signature ``columns`` (None: no signature).

    ``inputs`` is (services, views, entities) as indexed by :class:`FeatureBinder`.
    Naming: a feature ``f`` of view ``v`` feeds the model column ``f`` when the signature
    has it (the default names of ``get_historical_features``), else ``v__f`` when the
    signature has that (``full_names=True``); otherwise the model does not read it and it
    is not fetched. Without a signature every feature is fetched under ``f`` (``v__f``
    for a name that two views share). None when the model reads none of the features.
    """
    services, views, entities = inputs
    by_view = {view.name: view for view in views}
    refs: dict[tuple[str, str], None] = {}  # ordered set: services by name, refs in order
    for service in services:
        for ref in service.features:
            view_name, _, feature = ref.partition(":")
            view = by_view.get(view_name)
            if view is None:
                continue
            chosen_names = [f.name for f in view.features] if feature == "*" else [feature]
            refs.update(((view_name, n), None) for n in chosen_names)
    shared = Counter(name for _, name in refs)
    wanted = None if columns is None else frozenset(columns)
    chosen: dict[str, tuple[str, str]] = {}  # model column → (view, feature)
    for view_name, name in refs:
        full = f"{view_name}__{name}"
        if wanted is None:
            column = name if shared[name] == 1 else full
        elif name in wanted:
            column = name
        elif full in wanted:
            column = full
        else:
            continue
        chosen.setdefault(column, (view_name, name))  # the first reference wins a shared name
    if not chosen:
        log.warning(
            "feature service %s names model %s, whose signature reads none of its "
            "features: served without online features",
            ", ".join(s.name for s in services),
            model,
        )
        return None
    by_entity = {entity.name: entity for entity in entities}
    keys: dict[str, str] = {}
    for view_name in dict.fromkeys(v for v, _ in chosen.values()):
        for entity_name in by_view[view_name].entities:
            entity = by_entity.get(entity_name)
            if entity is None:
                continue
            for key in entity.join_keys:
                keys.setdefault(key, str(entity.value_type))
    return FeatureBinding(
        model=model,
        services=tuple(s.name for s in services),
        refs=tuple(f"{v}:{n}" for v, n in chosen.values()),
        fetched=tuple((f"{v}__{n}", column) for column, (v, n) in chosen.items()),
        keys=tuple(keys.items()),
        drop=tuple(k for k in keys if wanted is None or k not in wanted),
    )


def entity_tags(keys: Iterable[Mapping[str, Any]]) -> set[str]:
    """Cache tags of entities: their join-key values joined by ``|`` (as ``entity_keys``)."""
    return {"|".join(str(v) for v in key.values()) for key in keys}


def _inputs(catalog: Any, services: list[Any]) -> tuple[Any, Any, Any]:
    """The definitions a binding is built from: the services, their views and entities."""
    views: dict[str, Any] = {}
    for service in services:
        for ref in service.features:
            view = catalog.views.get(ref.partition(":")[0])
            if view is not None:
                views[view.name] = view
    entities = {
        name: catalog.entities[name]
        for view in views.values()
        for name in view.entities
        if name in catalog.entities
    }
    return tuple(services), tuple(views.values()), tuple(entities.values())
