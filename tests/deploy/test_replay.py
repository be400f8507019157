"""Replay (R-TRK-11) over a real prediction log written with real churn model outputs."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score
from tests.deploy.conftest import FEATURES, START_MS, Canary, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.demo.data import TARGET
from keel.errors import InvalidInput
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import ServedRequest

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


def log_requests(
    services: Services, canary: Canary, rows: pd.DataFrame, keys: list[list[str]], tag: str
) -> list[str]:
    """Log ``rows`` as churn-live's primary (v1) answered them, one request per item of
    ``keys`` (its rows' entity keys, in order); the request ids."""
    v1 = canary.models.by_version[1]
    positive = v1.predict_proba(rows[FEATURES])[:, 1]
    values = list(rows[FEATURES].itertuples(index=False, name=None))
    ids, start = [], 0
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for request_keys in keys:
            part = range(start, start + len(request_keys))
            ids.append(f"{tag}-req-{start}")
            log.append_served(
                ServedRequest(
                    request_id=ids[-1],
                    at_ms=START_MS + 1_000 + start * 100,
                    model="churn",
                    version=1,
                    columns=FEATURES,
                    rows=[values[i] for i in part],
                    outputs=[int(positive[i] >= 0.5) for i in part],
                    probabilities=[[1 - positive[i], positive[i]] for i in part],
                    hits=[False] * len(part),
                    fallback=False,
                    latency_ms=4.0,
                    entity_keys=request_keys,
                    deployment="churn-live",
                    arm="primary",
                )
            )
            start += len(request_keys)
        assert log.flush()
    return ids


def mixed_requests(production: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows (a multiple of 3), three to a request: one churned and two retained
    customers each, so the rows of every request have different labels."""
    churned = production[production[TARGET] == 1].iloc[: n // 3]
    stayed = production[production[TARGET] == 0].iloc[: 2 * (n // 3)]
    order = [
        frame.iloc[[i]]
        for k in range(n // 3)
        for frame, i in ((churned, k), (stayed, 2 * k), (stayed, 2 * k + 1))
    ]
    return pd.concat(order)


def test_replay_scores_each_row_of_a_multi_row_request_with_its_own_label(
    services: Services, canary: Canary, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    rows = mixed_requests(churn_rows[1], 240)
    keys = [[f"cust-{i}", f"cust-{i + 1}", f"cust-{i + 2}"] for i in range(0, len(rows), 3)]
    log_requests(services, canary, rows, keys, "m")
    labels, at = rows[TARGET].tolist(), START_MS + 60_000
    flat = [key for request_keys in keys for key in request_keys]
    services.feedback.submit(
        [
            {"entity_key": k, "event_time": at, "label": int(y)}
            for k, y in zip(flat, labels, strict=True)
        ]
    )
    report = canary.service.replay("churn-live", [1, 2], since=START_MS)
    assert report["rows"] == report["labelled"] == len(rows)
    for version, metrics in ((v["version"], v["metrics"]) for v in report["versions"]):
        model = canary.models.by_version[version]
        scores = model.predict_proba(rows[FEATURES])[:, 1]
        assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
        predicted = model.predict(rows[FEATURES])
        assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    assert report["ambiguous_labels"] == {"requests": 0, "rows": 0, "examples": []}


def test_replay_counts_requests_whose_rows_it_cannot_tell_apart(
    services: Services,
    canary: Canary,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = mixed_requests(churn_rows[1], 9)
    # one label for a whole request: each of its rows gets it (as feedback joins it); a
    # customer in two rows of one request with two outcomes: which row had which cannot
    # be told, so neither row gets a label and the request is counted
    keys = [["a", "b", "c"], ["d", "d", "e"], ["f", "g", "h"]]
    whole, twins, _ = log_requests(services, canary, rows, keys, "t")
    later = START_MS + 60_000
    services.feedback.submit(
        [
            {"request_id": whole, "label": 1},
            {"entity_key": "d", "event_time": later, "label": 0},
            {"entity_key": "d", "event_time": later + 1, "label": 1},
            {"entity_key": "e", "event_time": later, "label": 1},
        ]
    )
    report = canary.service.replay("churn-live", [1], since=START_MS)
    assert (report["rows"], report["labelled"]) == (9, 3 + 1)
    assert report["ambiguous_labels"] == {"requests": 1, "rows": 2, "examples": [twins]}
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    args = ["deploy", "replay", "churn-live", "--versions", "1", "--since", str(START_MS)]
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())  # the console folds lines at 80 columns
    assert "2 rows of 1 requests left unlabelled" in said and twins in said
