"""Definitions part of ``FeatureStore``: plan, apply, the cached catalog, feature references."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from keel.errors import InvalidInput, NotFound
from keel.features._csvsql import source_problem
from keel.features._retrieval import Catalog, resolve
from keel.features._store_base import StoreBase
from keel.features._support import merge_definitions, now_ms
from keel.features.definitions import (
    Definitions,
    as_definitions,
    build_plan,
    load_yaml,
    parse_definition,
    plan_writes,
    validate_references,
)
from keel.features.models import Entity, FeatureService, FeatureView, Plan, StoredDefinition
from keel.features.offline import Selection

__all__ = ["DefinitionsInput", "DefinitionsMixin"]

DefinitionsInput = Definitions | Iterable[Entity | FeatureView | FeatureService] | str | Path


class DefinitionsMixin(StoreBase):
    """Entities, feature views and services: versions, plans, the live catalog."""

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
        plan = build_plan(desired, current, prune=prune)
        touched = {i.name for i in plan.items if i.kind == "feature_view" and i.action != "remove"}
        touched -= {i.name for i in plan.items if i.action == "unchanged"}
        problems = (source_problem(v) for v in desired.feature_views if v.name in touched)
        plan.warnings = [p for p in problems if p]
        return plan

    def apply(self, definitions: DefinitionsInput, *, prune: bool = True) -> Plan:
        """Store each new or changed definition as a new version; returns the plan applied.

        All or nothing: one transaction. Sources are not read here; the plan's
        ``warnings`` name a source that cannot be reached now (no file, database down),
        and retrieval / materialisation fail on it with the path or host and database.
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

    def cached_catalog(self) -> Catalog | None:
        """The catalog :meth:`catalog` would return without reading the database, or None.

        None when the cached copy is missing or older than ``features_registry_refresh_s``:
        then only :meth:`catalog` (which may read) gives the live definitions. For callers
        that must not block, such as the serving gateway on its event loop.
        """
        catalog = self._catalog
        if (
            catalog is None
            or self.clock() - self._catalog_at > self.settings.features_registry_refresh_s
        ):
            return None
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

    def _views(self, names: Sequence[str] | None) -> list[FeatureView]:
        catalog = self._fresh()
        if names is None:
            return [v for v in catalog.views.values() if v.online]
        unknown = [n for n in names if n not in catalog.views]
        if unknown:
            raise NotFound(f"unknown feature views: {', '.join(unknown)}", field="views")
        return [catalog.views[n] for n in names]
