"""Train and update functions of the incremental-update tests (imported by path, R-TRN-09)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tests.automation.retrain_train import Killed

from keel.automation.retrain.updaters import partial_fit

LABEL = "churn"
#: The frames each update function received (inline executor only).
SEEN: list[pd.DataFrame] = []
#: ``dies`` raises Killed after updating on this call number (1-based).
DIE_ON_CALL = {"n": 0, "calls": 0}


def train(frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """A logistic model fitted by SGD (it has partial_fit) on the churn features."""
    features = frame.drop(columns=[LABEL])
    numeric = list(features.select_dtypes("number").columns)
    categorical = [c for c in features.columns if c not in numeric]
    encode = make_column_transformer(
        (StandardScaler(), numeric), (OneHotEncoder(handle_unknown="ignore"), categorical)
    )
    model = make_pipeline(encode, SGDClassifier(loss="log_loss", alpha=1e-3, random_state=0))
    return model.fit(features, frame[LABEL])


def refit(model: Any, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """An update for a model without partial_fit: refit the champion's pipeline on the
    batch from its current coefficients (sklearn warm_start)."""
    SEEN.append(frame.copy())
    model.set_params(logisticregression__warm_start=True, logisticregression__max_iter=50)
    return model.fit(frame.drop(columns=[params["label"]]), frame[params["label"]])


def dies(model: Any, frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """partial_fit, then the worker 'dies' (before registration) on call ``DIE_ON_CALL['n']``."""
    SEEN.append(frame.copy())
    DIE_ON_CALL["calls"] += 1
    updated = partial_fit(model, frame.drop(columns=[params["label"]]), frame[params["label"]])
    if DIE_ON_CALL["calls"] == DIE_ON_CALL["n"]:
        raise Killed
    return updated
