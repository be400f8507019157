"""keel's feature store: definitions, point-in-time retrieval, online serving, skew checks.

>>> from keel.features import Entity
>>> Entity(name="customer", join_keys=["customer_id"]).value_type
<ValueType.INT64: 'int64'>
"""

from __future__ import annotations

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
