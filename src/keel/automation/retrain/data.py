"""Training rows for a retraining: the prediction log joined with feedback labels over the
window, minus rows a rollback marked bad, split by time, with optional decay weights.

Implicit labels (R-TRN-23, derived from signals) weigh ``retrain.implicit_weight`` (0 leaves
them out); with ``retrain.exploration`` (R-TRN-24) every row carries its cohort and
propensity, and weighs ``1 / propensity`` under inverse-propensity weighting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.automation.retrain.exploration import EXPLORE_COLUMN, PROPENSITY_COLUMN, mark
from keel.automation.retrain.spec import DataSpec, RetrainSpec, SplitSpec
from keel.automation.retrain.storefeatures import bound_features, join_store_features
from keel.deploy.badwindows import exclude_bad_windows
from keel.errors import InvalidInput, NotFound

__all__ = [
    "TS_COLUMN",
    "WEIGHT_COLUMN",
    "TrainingData",
    "assemble",
    "decay_weights",
    "feature_columns",
    "model_frame",
    "time_split",
]

#: The event-time column kept beside the features (epoch ms); never given to ``train``.
TS_COLUMN = "_ts_ms"
#: A row's training weight (implicit labels, inverse propensity); never given to ``train``,
#: which gets it as ``params["sample_weight"]``. Present only when some weight is not 1.
WEIGHT_COLUMN = "_weight"
#: The columns kept beside the features and the label that the model never sees.
INTERNAL_COLUMNS = (TS_COLUMN, WEIGHT_COLUMN, EXPLORE_COLUMN, PROPENSITY_COLUMN)
_DAY_MS = 86_400_000


def model_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the internal columns: what ``train``, a model and a gate see."""
    return frame.drop(columns=[c for c in INTERNAL_COLUMNS if c in frame.columns])


@dataclass(frozen=True)
class TrainingData:
    """The assembled rows, oldest first, and what was left out and why."""

    frame: pd.DataFrame  # features, label, TS_COLUMN
    features: list[str]
    labelled_rows: int  # labelled predictions in the window
    bad_rows: int  # left out: inside a rolled-back arm's window
    before_change_rows: int  # left out: predicted before the change point
    store_columns: tuple[str, ...] = ()  # joined from the feature store, point in time
    no_entity_rows: int = 0  # left out: a bound model's prediction that named no entity
    implicit_rows: int = 0  # kept rows whose label came from a signal (R-TRN-23)
    excluded_implicit_rows: int = 0  # left out: implicit labels with implicit_weight 0
    explored_rows: int | None = None  # rows in the exploration share (R-TRN-24), if any

    def counts(self) -> dict[str, int]:
        """The numbers a decision records."""
        return {
            "labelled_rows": self.labelled_rows,
            "excluded_bad_window_rows": self.bad_rows,
            "excluded_before_change_point_rows": self.before_change_rows,
            "excluded_no_entity_rows": self.no_entity_rows,
            "feature_store_columns": len(self.store_columns),
            "rows": len(self.frame),
            "implicit_rows": self.implicit_rows,
            "excluded_implicit_rows": self.excluded_implicit_rows,
            **({} if self.explored_rows is None else {"explored_rows": self.explored_rows}),
        }


def feature_columns(
    services: Any, model: str, spec: RetrainSpec
) -> tuple[list[str], dict[str, str]]:
    """The features to train on (the spec's, else the serving version's signature) and the
    signature's type per feature (to restore categories)."""
    types: dict[str, str] = {}
    version = _serving_version(services, model)
    if version is not None and version.signature:
        types = {c["name"]: c.get("type", "") for c in version.signature.get("inputs", [])}
    if spec.features is not None:
        return list(spec.features), types
    if not types:
        raise InvalidInput(
            f"retrain.features: model {model!r} has no version with a signature; list the features",
            field="retrain.features",
        )
    return list(types), types


def _serving_version(services: Any, model: str) -> Any | None:
    try:
        registered = services.registry.get_model(model)
    except NotFound:
        return None
    version = registered.aliases.get("champion")
    if version is None:
        versions = services.registry.list_versions(model)
        return versions[0] if versions else None
    return services.registry.get_version(model, version)


def assemble(
    services: Any,
    model: str,
    spec: RetrainSpec,
    data: DataSpec,
    now_ms: int,
    received: tuple[int, int] | None = None,
) -> TrainingData:
    """Labelled predictions of ``model`` in ``[now − window, now)`` as a training frame.

    Rows inside a rollback's bad window (:func:`keel.deploy.badwindows.exclude_bad_windows`)
    are dropped; with ``after_change_point`` only rows predicted at or after ``since_ms``
    are kept (R-TRN-20: the old concept's labels would teach the old answer). When a
    feature service names the model, the features serving fetches for it are joined point
    in time from the feature store (:mod:`keel.automation.retrain.storefeatures`).
    InvalidInput names ``retrain.features`` when a feature is neither logged nor bound.
    ``received=(after_ms, until_ms)`` keeps only labels received in ``(after, until]``
    (an incremental update's batch, :mod:`keel.automation.retrain.incremental`).
    """
    features, types = feature_columns(services, model, spec)
    start = now_ms - spec.window_s * 1000
    labelled = services.feedback.labelled(model, None, start, now_ms)
    if received is not None and not labelled.empty:
        got = _epoch_ms(labelled["received_ts"])
        keep = (got > received[0]) & (got <= received[1])
        labelled = labelled.loc[keep].reset_index(drop=True)
    if labelled.empty:
        return TrainingData(_empty(features, spec.label), features, 0, 0, 0)
    total = len(labelled)
    windows = services.deployments.bad_windows(model)
    if windows:
        kept = exclude_bad_windows(pa.Table.from_pandas(labelled, preserve_index=False), windows)
        labelled = kept.to_pandas()
    bad = total - len(labelled)
    ts_ms = _epoch_ms(labelled["ts"])
    before = 0
    if data.mode == "after_change_point" and data.since_ms is not None:
        after = ts_ms >= data.since_ms
        before = int((~after).sum())
        labelled, ts_ms = labelled.loc[after], ts_ms[after]
    dropped = 0
    if spec.implicit_weight == 0:  # R-TRN-23: implicit labels excluded
        implicit = _implicit(labelled)
        dropped = int(implicit.sum())
        labelled, ts_ms = labelled.loc[~implicit], ts_ms[~implicit]
    binding = bound_features(services, model, features)
    store: dict[str, pd.Series] = {}
    no_entity = 0
    if binding is not None and len(labelled):
        joined = join_store_features(services, binding, labelled, ts_ms)
        no_entity = int(joined.no_entity.sum())
        labelled, ts_ms = labelled.loc[~joined.no_entity], ts_ms[~joined.no_entity]
        store = joined.values
    missing = [f for f in features if f not in store and f"f_{f}" not in labelled.columns]
    if missing and len(labelled):
        raise InvalidInput(
            f"retrain.features: {missing} not in the prediction log of {model!r}",
            field="retrain.features",
        )
    frame = pd.DataFrame(
        {f: store[f] if f in store else labelled[f"f_{f}"].to_numpy() for f in features}
    )
    for name in features:
        if types.get(name) == "category":
            frame[name] = frame[name].astype("category")
    frame[spec.label] = _labels(labelled)
    frame[TS_COLUMN] = ts_ms
    implicit = _implicit(labelled)
    weights = np.where(implicit, spec.implicit_weight, 1.0)
    explored_rows = None
    if spec.exploration is not None:  # R-TRN-24: cohort and propensity of every row
        explore, propensity = mark(labelled.reset_index(drop=True), spec.exploration, model)
        frame[EXPLORE_COLUMN], frame[PROPENSITY_COLUMN] = explore, propensity
        explored_rows = int(explore.sum())
        if spec.exploration.weighting == "ipw":
            weights = weights / propensity
    if len(frame) and not np.all(weights == 1.0):
        frame[WEIGHT_COLUMN] = weights
    frame = frame.dropna(subset=[spec.label])
    frame = frame.sort_values(TS_COLUMN, kind="stable").reset_index(drop=True)
    columns = tuple(c for c in features if c in store)
    return TrainingData(
        frame,
        features,
        total,
        bad,
        before,
        columns,
        no_entity,
        int(implicit.sum()),
        dropped,
        explored_rows,
    )


def _implicit(labelled: pd.DataFrame) -> np.ndarray:
    """Which labels came from a signal (R-TRN-23); none before signals existed."""
    if "label_source" not in labelled.columns:
        return np.zeros(len(labelled), dtype=bool)
    return np.asarray(labelled["label_source"].to_numpy() == "implicit", dtype=bool)


def _empty(features: list[str], label: str) -> pd.DataFrame:
    return pd.DataFrame(columns=[*features, label, TS_COLUMN])


def _epoch_ms(values: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(values, utc=True)
    epoch = pd.Timestamp(0, tz="UTC")
    return np.asarray((stamps - epoch) // pd.Timedelta(milliseconds=1), dtype=np.int64)


def _labels(labelled: pd.DataFrame) -> pd.Series:
    """Numeric labels when every label is a number (or bool); else the decoded JSON value."""
    values = labelled["label_value"]
    if values.notna().all():
        numbers = values.to_numpy(dtype=float)
        if np.all(numbers == np.round(numbers)):
            return pd.Series(numbers.astype(np.int64))
        return pd.Series(numbers)
    return pd.Series([json.loads(text) if text is not None else None for text in labelled["label"]])


def time_split(frame: pd.DataFrame, split: SplitSpec) -> tuple[pd.DataFrame, ...]:
    """Train, validation and holdout: consecutive slices of ``frame`` ordered by event time
    (R-TRN-22: never shuffled). A part may be empty when the frame is tiny."""
    ordered = frame.sort_values(TS_COLUMN, kind="stable").reset_index(drop=True)
    n = len(ordered)
    holdout_s = split.holdout_s
    if holdout_s is not None and n:
        # a duration holdout (R-TRN-06 "last 6 months"): rows within it of the newest row
        start = int(ordered[TS_COLUMN].iloc[-1]) - holdout_s * 1000
        n_before = int(np.searchsorted(ordered[TS_COLUMN].to_numpy(), start, side="left"))
        n_train = int(round(n_before * split.train / (split.train + split.validation)))
        cuts = [n_train, n_before]
    else:
        n_train = int(round(n * split.train))
        n_valid = int(round(n * split.validation))
        cuts = [n_train, min(n, n_train + n_valid)]
    parts = np.split(np.arange(n), cuts)
    return tuple(ordered.iloc[p].reset_index(drop=True) for p in parts)


def decay_weights(ts_ms: np.ndarray, decay_per_day: float, reference_ms: int) -> np.ndarray:
    """``e^(−λ·age)`` with the age in days before ``reference_ms`` (the newest row gets 1).

    >>> decay_weights(np.array([0, 86_400_000]), 0.0, 86_400_000).tolist()
    [1.0, 1.0]
    """
    age_days = np.maximum(reference_ms - np.asarray(ts_ms, dtype=np.int64), 0) / _DAY_MS
    return np.exp(-decay_per_day * age_days)
