"""The performance trigger's ROC AUC (rank-sum) against sklearn's, on real churn scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from keel.automation.triggers.conditions import _metric
from keel.demo.data import TARGET, load_churn, split
from keel.errors import InvalidInput

FEATURES = ["tenure", "monthly_charges", "total_charges", "senior_citizen"]


def _frame(truth: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"label_value": truth, "score": scores, "output": (scores >= 0.5).astype(np.int64)}
    )


@pytest.fixture(scope="module")
def churn_scores() -> tuple[np.ndarray, np.ndarray]:
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    scores = model.predict_proba(production[FEATURES])[:, 1]
    return production[TARGET].to_numpy(dtype=np.float64), scores


def test_auc_matches_sklearn_with_ties(churn_scores: tuple[np.ndarray, np.ndarray]) -> None:
    truth, scores = churn_scores
    # Rounded scores tie often: ties at their average rank, as sklearn's ROC curve counts them.
    for values in (scores, np.round(scores, 2), np.round(scores, 1)):
        value, n = _metric(_frame(truth, values), "roc_auc")
        assert n == truth.size
        assert value == pytest.approx(roc_auc_score(truth, values), abs=1e-12)


def test_auc_undefined_cases(churn_scores: tuple[np.ndarray, np.ndarray]) -> None:
    truth, scores = churn_scores
    assert _metric(_frame(np.ones(truth.size), scores), "roc_auc") == (None, truth.size)
    missing = scores.copy()
    missing[3] = np.nan
    assert _metric(_frame(truth, missing), "roc_auc") == (None, truth.size)
    unlabelled = _frame(truth, scores)
    unlabelled.loc[:9, "label_value"] = np.nan
    value, n = _metric(unlabelled, "roc_auc")
    assert n == truth.size - 10
    assert value == pytest.approx(roc_auc_score(truth[10:], scores[10:]), abs=1e-12)
    with pytest.raises(InvalidInput, match="y_score"):
        _metric(_frame(truth, scores * 2), "roc_auc")
