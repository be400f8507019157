"""A train function for rows with feature-store columns, which may be null (a feature
older than its view's TTL): imputed, scaled, logistic regression."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

LABEL = "churn"


def train(frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """Every column but the label is numeric here."""
    features = frame.drop(columns=[LABEL]).astype(float)
    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(features, frame[LABEL])
