"""Feature-store columns of the training rows (R-TRN-27 with R-FEA-*).

A model that a feature service names is *bound* at serving time
(:func:`keel.serving.binding.build_binding`): the gateway fetches those features online by
the entity each request names. Retraining reads the same binding and joins the same
features **point in time** from the offline store
(:meth:`keel.features.FeatureStore.get_historical_features`) on the logged entity and the
prediction time, so each training row has the values the feature store held when the
prediction was made — the features serving used, not today's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# _inputs is the one place that collects a binding's views and entities (serving uses it too)
from keel.serving.binding import FeatureBinding, _inputs, build_binding

__all__ = ["StoreColumns", "bound_features", "join_store_features"]

#: The logged column of the entity a request named: its join-key values joined by ``|``.
ENTITY_COLUMN = "entity_key"
_TIME = "event_timestamp"


@dataclass(frozen=True)
class StoreColumns:
    """Feature-store values per model column for the rows that named an entity, and which
    rows named none (they cannot be joined)."""

    values: dict[str, pd.Series]  # one value per row with an entity, in row order
    no_entity: np.ndarray[Any, Any]  # bool per labelled row


def bound_features(services: Any, model: str, columns: Sequence[str]) -> FeatureBinding | None:
    """The binding serving applies to ``model`` with input ``columns``; None when no
    feature service names the model (or it reads none of their features)."""
    catalog = services.features.catalog()
    bound = sorted((s for s in catalog.services.values() if s.model == model), key=lambda s: s.name)
    if not bound:
        return None
    return build_binding(model, list(columns), _inputs(catalog, bound))


def join_store_features(
    services: Any, binding: FeatureBinding, labelled: pd.DataFrame, ts_ms: np.ndarray[Any, Any]
) -> StoreColumns:
    """The bound features of each labelled prediction as of its time ``ts_ms`` (epoch ms).

    A join key comes from the logged input column ``f_<key>`` when the model reads the key,
    else from the logged ``entity_key``. Rows without one cannot be joined: they are
    flagged in ``no_entity`` and have no values.
    """
    keys, missing = _entity_keys(binding, labelled)
    kept = ~missing
    if not kept.any():
        return StoreColumns({c: pd.Series([], dtype=object) for _, c in binding.fetched}, missing)
    entity = pd.DataFrame({name: column[kept].to_numpy() for name, column in keys.items()})
    entity[_TIME] = pd.to_datetime(ts_ms[kept], unit="ms", utc=True)
    found = services.features.get_historical_features(
        entity, list(binding.refs), full_names=True, features_only=True
    )
    # found's rows are the entity rows, in order; its dtypes are the views'
    values = {column: found[name].reset_index(drop=True) for name, column in binding.fetched}
    return StoreColumns(values=values, no_entity=missing)


def _entity_keys(
    binding: FeatureBinding, labelled: pd.DataFrame
) -> tuple[dict[str, pd.Series], np.ndarray[Any, Any]]:
    n = len(labelled)
    logged = labelled[ENTITY_COLUMN] if ENTITY_COLUMN in labelled else pd.Series([None] * n)
    parts = (
        logged.astype(object)
        .where(logged.notna(), None)
        .map(lambda text: None if text is None else str(text).split("|"))
    )
    missing = np.zeros(n, dtype=bool)
    keys: dict[str, pd.Series] = {}
    for at, (name, kind) in enumerate(binding.keys):
        column = f"f_{name}"
        if column in labelled:
            raw = labelled[column].reset_index(drop=True)
        else:
            raw = pd.Series(
                [p[at] if p is not None and len(p) == len(binding.keys) else None for p in parts]
            )
        if kind == "int64":
            number = pd.to_numeric(raw, errors="coerce")
            missing |= number.isna().to_numpy()
            keys[name] = number.fillna(0).astype(np.int64)
        else:
            missing |= raw.isna().to_numpy()
            keys[name] = raw.astype(object).where(raw.notna(), "").astype(str)
    return keys, missing
