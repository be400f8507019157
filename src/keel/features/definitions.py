"""Definition sets: load them from YAML, check their references, diff them against the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keel._models import invalid_input
from keel.errors import InvalidInput
from keel.features.models import (
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    ObjectChange,
    Plan,
    StoredDefinition,
)

__all__ = [
    "Definitions",
    "build_plan",
    "load_yaml",
    "parse_definition",
    "plan_writes",
    "spec_hash",
    "validate_references",
]

Definition = Entity | FeatureView | FeatureService
_KINDS: dict[str, type[Entity] | type[FeatureView] | type[FeatureService]] = {
    "entity": Entity,
    "feature_view": FeatureView,
    "feature_service": FeatureService,
}


class Definitions(BaseModel):
    """A whole definition set, as in a YAML file."""

    model_config = ConfigDict(extra="forbid")

    entities: list[Entity] = Field(default_factory=list)
    feature_views: list[FeatureView] = Field(default_factory=list)
    feature_services: list[FeatureService] = Field(default_factory=list)

    def objects(self) -> list[Definition]:
        """Every definition, entities first."""
        return [*self.entities, *self.feature_views, *self.feature_services]


#: Discriminated unions add the tag to the location (source.file.path): it is hidden.
_TAGS = ("file", "sql", "function-after[_table_or_query()]")


def load_yaml(path: Path | str) -> Definitions:
    """Read a YAML definition file; relative source paths resolve against its folder.

    Raises ``InvalidInput`` naming the field path (``feature_views[1].ttl``) on
    any error, including YAML syntax errors (with the line).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{path} is not valid YAML{where}", field="file") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{path} must hold a mapping with entities/feature_views/…", field="file"
        )
    try:
        definitions = Definitions.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc, whole="definitions", hide=_TAGS) from exc
    base = path.resolve().parent
    views = []
    for view in definitions.feature_views:
        source = view.source
        if isinstance(source, FileSource) and not Path(source.path).is_absolute():
            source = source.model_copy(update={"path": str(base / source.path)})
            view = view.model_copy(update={"source": source})
        views.append(view)
    return definitions.model_copy(update={"feature_views": views})


def parse_definition(kind: str, spec: dict[str, Any]) -> Definition:
    """Rebuild a stored spec (trusted: it was validated on apply)."""
    return _KINDS[kind].model_validate(spec)


def spec_hash(obj: Definition) -> str:
    """sha256 of the canonical JSON of a definition."""
    text = json.dumps(obj.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def as_definitions(objects: Iterable[Definition] | Definitions) -> Definitions:
    """A :class:`Definitions` from a list of objects; duplicate names are rejected."""
    if isinstance(objects, Definitions):
        found = objects
    else:
        items = list(objects)
        for i, item in enumerate(items):
            if not isinstance(item, Entity | FeatureView | FeatureService):
                raise InvalidInput(
                    f"definitions[{i}] is a {type(item).__name__}, not a definition",
                    field=f"definitions[{i}]",
                )
        found = Definitions(
            entities=[o for o in items if isinstance(o, Entity)],
            feature_views=[o for o in items if isinstance(o, FeatureView)],
            feature_services=[o for o in items if isinstance(o, FeatureService)],
        )
    groups: list[tuple[str, Sequence[Definition]]] = [
        ("entities", found.entities),
        ("feature_views", found.feature_views),
        ("feature_services", found.feature_services),
    ]
    for group, members in groups:
        seen: set[str] = set()
        for i, obj in enumerate(members):
            if obj.name in seen:
                raise InvalidInput(
                    f"{group}[{i}].name: {obj.name!r} is defined twice", field=f"{group}[{i}].name"
                )
            seen.add(obj.name)
    return found


def validate_references(definitions: Definitions) -> None:
    """Views name known entities; services name known ``view:feature`` pairs."""
    entities = {e.name for e in definitions.entities}
    views = {v.name: v for v in definitions.feature_views}
    for i, view in enumerate(definitions.feature_views):
        for j, entity in enumerate(view.entities):
            if entity not in entities:
                raise InvalidInput(
                    f"feature_views[{i}].entities[{j}]: unknown entity {entity!r}",
                    field=f"feature_views[{i}].entities[{j}]",
                )
        keys = [
            k
            for name in view.entities
            for e in definitions.entities
            if e.name == name
            for k in e.join_keys
        ]
        clash = sorted({f.name for f in view.features} & set(keys))
        if clash:
            raise InvalidInput(
                f"feature_views[{i}].features: {', '.join(clash)} is a join key",
                field=f"feature_views[{i}].features",
            )
    for i, service in enumerate(definitions.feature_services):
        for j, ref in enumerate(service.features):
            view_name, _, feature = ref.partition(":")
            target = views.get(view_name)
            if target is None or (feature != "*" and target.feature(feature) is None):
                raise InvalidInput(
                    f"feature_services[{i}].features[{j}]: unknown feature {ref!r}",
                    field=f"feature_services[{i}].features[{j}]",
                )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, dict) and "name" in v for v in value)
    ):
        flat = {}
        for item in value:
            flat.update(_flatten(item, f"{prefix}[{item['name']}]"))
        return flat
    return {prefix: value}


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: old → new`` for each differing leaf (lists of named items by name)."""
    before, after = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(before) | set(after)):
        if before.get(key, "∅") != after.get(key, "∅"):
            lines.append(f"{key}: {before.get(key, '∅')!r} → {after.get(key, '∅')!r}")
    return lines


def build_plan(
    desired: Definitions, current: Sequence[StoredDefinition], *, prune: bool = True
) -> Plan:
    """What applying ``desired`` over the ``current`` newest versions would do."""
    latest = {(d.kind, d.name): d for d in current}
    items: list[ObjectChange] = []
    wanted: set[tuple[str, str]] = set()
    for obj in desired.objects():
        key = (obj.kind, obj.name)
        wanted.add(key)
        stored = latest.get(key)
        spec = obj.model_dump(mode="json")
        if stored is None:
            items.append(ObjectChange(action="add", kind=obj.kind, name=obj.name, to_version=1))
        elif stored.removed_at_ms is not None:
            items.append(
                ObjectChange(
                    action="add",
                    kind=obj.kind,
                    name=obj.name,
                    from_version=stored.version,
                    to_version=stored.version + 1,
                    changes=describe_changes(stored.spec, spec),
                )
            )
        elif stored.spec_hash != spec_hash(obj):
            items.append(
                ObjectChange(
                    action="change",
                    kind=obj.kind,
                    name=obj.name,
                    from_version=stored.version,
                    to_version=stored.version + 1,
                    changes=describe_changes(stored.spec, spec),
                )
            )
        else:
            items.append(
                ObjectChange(
                    action="unchanged",
                    kind=obj.kind,
                    name=obj.name,
                    from_version=stored.version,
                    to_version=stored.version,
                )
            )
    if prune:
        for (kind, name), stored in sorted(latest.items()):
            if (kind, name) not in wanted and stored.removed_at_ms is None:
                items.append(
                    ObjectChange(action="remove", kind=kind, name=name, from_version=stored.version)
                )
    return Plan(items=items)


def plan_writes(
    plan: Plan, desired: Definitions
) -> tuple[
    list[tuple[str, str, int, dict[str, Any], str]],
    list[tuple[str, str, int]],
    list[tuple[str, str]],
]:
    """What to store for a plan: new versions, removals, and (view, feature) pairs defined."""
    by_key: dict[tuple[str, str], Definition] = {(o.kind, o.name): o for o in desired.objects()}
    writes: list[tuple[str, str, int, dict[str, Any], str]] = []
    new_features: list[tuple[str, str]] = []
    for item in plan.items:
        if item.action in ("add", "change"):
            obj = by_key[(item.kind, item.name)]
            spec = obj.model_dump(mode="json")
            writes.append((obj.kind, obj.name, item.to_version or 1, spec, spec_hash(obj)))
            if isinstance(obj, FeatureView):
                new_features += [(obj.name, f.name) for f in obj.features]
    removals = [(i.kind, i.name, i.from_version or 0) for i in plan.items if i.action == "remove"]
    return writes, removals, new_features
