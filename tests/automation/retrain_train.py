"""Train functions the retraining tests import by path (``tests.automation.retrain_train:…``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

LABEL = "churn"
#: What the last call of ``train`` saw (inline executor only): frame and params.
SEEN: list[tuple[pd.DataFrame, dict[str, Any]]] = []


def train(frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """A logistic regression on the churn features, with optional decay weights."""
    SEEN.append((frame.copy(), dict(params)))
    features = frame.drop(columns=[LABEL])
    # explicit column lists (make_column_selector by dtype would load too)
    numeric = list(features.select_dtypes("number").columns)
    categorical = [c for c in features.columns if c not in numeric]
    encode = make_column_transformer(
        (StandardScaler(), numeric), (OneHotEncoder(handle_unknown="ignore"), categorical)
    )
    model = make_pipeline(encode, LogisticRegression(C=float(params.get("C", 1.0)), max_iter=500))
    return model.fit(
        features, frame[LABEL], logisticregression__sample_weight=params.get("sample_weight")
    )


def broken(frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """A train function with a bug."""
    raise RuntimeError("the train function blew up on purpose")


NOT_CALLABLE = 3


class Killed(BaseException):
    """Stands in for kill -9: not an Exception, so nothing in the job handles it."""


#: ``dies`` raises Killed on this call number (1-based), then trains normally.
DIE_ON_CALL = {"n": 0, "calls": 0}


def dies(frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """``train``, but the worker 'dies' on call ``DIE_ON_CALL['n']``."""
    DIE_ON_CALL["calls"] += 1
    if DIE_ON_CALL["calls"] == DIE_ON_CALL["n"]:
        raise Killed
    return train(frame, params)
