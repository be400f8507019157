"""Replay (R-TRK-11) over a real prediction log written with real churn model outputs."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from tests.deploy.conftest import FEATURES, START_MS, Canary, serve_step

from keel.demo.data import TARGET
from keel.errors import InvalidInput
from keel.services import Services

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_replay_reports_agreement_shift_latency_and_metrics_per_version(
    services: Services, canary: Canary, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    service, models = canary.service, canary.models
    rows = churn_rows[1].iloc[:600]
    serve_step(services, models, rows, canary.clock)  # 95 % answered by v1 (good), 5 % by v2
    report = service.replay("churn-live", [1, 2], since=START_MS)
    assert report["rows"] == len(rows) and report["labelled"] == len(rows)
    by_version = {v["version"]: v for v in report["versions"]}
    assert by_version[1]["agreement"] > 0.9 > by_version[2]["agreement"]
    assert by_version[1]["psi"] < by_version[2]["psi"]
    assert 0 <= by_version[2]["ks"] <= 1
    assert by_version[1]["latency_ms"]["p50"] > 0
    assert by_version[1]["latency_ms"]["p99"] >= by_version[1]["latency_ms"]["p50"]
    good = models.good.predict_proba(rows[FEATURES])[:, 1]
    expected = roc_auc_score(rows[TARGET], good)
    assert by_version[1]["metrics"]["roc_auc"] == pytest.approx(expected, abs=1e-9)
    assert by_version[2]["metrics"]["roc_auc"] < by_version[1]["metrics"]["roc_auc"]
    assert set(by_version[1]["metrics"]) == {"accuracy", "roc_auc"}
    limited = service.replay("churn-live", [1], since=START_MS, limit=50)
    assert limited["rows"] == 50


def test_replay_bad_input_names_the_field(canary: Canary) -> None:
    service = canary.service
    with pytest.raises(InvalidInput, match="versions: model 'churn' has no version 9"):
        service.replay("churn-live", [1, 9], since=START_MS)
    with pytest.raises(InvalidInput, match="no logged requests in the window"):
        service.replay("churn-live", [1], since=START_MS)
    with pytest.raises(InvalidInput) as caught:
        service.replay("churn-live", [1], since="yesterday-ish")
    assert caught.value.field == "since"
    with pytest.raises(InvalidInput, match="limit"):
        service.replay("churn-live", [1], since=START_MS, limit=0)
