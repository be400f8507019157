"""keel's feature store: definitions, point-in-time retrieval, online serving, skew checks.

>>> from keel.features import Entity
>>> Entity(name="customer", join_keys=["customer_id"]).value_type
<ValueType.INT64: 'int64'>

The names below load on first use (PEP 562 ``__getattr__``): importing a submodule
such as :mod:`keel.features.models`, as a client-only ``keel features ... --server``
command does, must not pull in pandas, DuckDB and the store through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.features.definitions import Definitions, load_yaml
    from keel.features.models import (
        Entity,
        Feature,
        FeatureService,
        FeatureView,
        FileSource,
        Freshness,
        ObjectChange,
        Plan,
        SqlSource,
        StoredDefinition,
        UnusedFeature,
        ValueType,
    )
    from keel.features.service import FeatureStore, InvalidationCallback
    from keel.features.skew import FeatureSkew, SkewReport, compare_skew

#: Public name → the submodule defining it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("Definitions", "load_yaml"), "keel.features.definitions"),
    **dict.fromkeys(
        (
            "Entity",
            "Feature",
            "FeatureService",
            "FeatureView",
            "FileSource",
            "Freshness",
            "ObjectChange",
            "Plan",
            "SqlSource",
            "StoredDefinition",
            "UnusedFeature",
            "ValueType",
        ),
        "keel.features.models",
    ),
    **dict.fromkeys(("FeatureStore", "InvalidationCallback"), "keel.features.service"),
    **dict.fromkeys(("FeatureSkew", "SkewReport", "compare_skew"), "keel.features.skew"),
}

__all__ = [
    "Definitions",
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureSkew",
    "FeatureStore",
    "FeatureView",
    "FileSource",
    "Freshness",
    "InvalidationCallback",
    "ObjectChange",
    "Plan",
    "SkewReport",
    "SqlSource",
    "StoredDefinition",
    "UnusedFeature",
    "ValueType",
    "compare_skew",
    "load_yaml",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keel.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
