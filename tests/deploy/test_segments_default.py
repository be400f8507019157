"""R-DEP-15: per-segment results are always reported. Without ``analysis.segments`` the
issue's minimal policy gets the default columns (the logged inputs with few values, then
numeric inputs by quartiles); ``segments: []`` opts out; every number equals a pandas /
scikit-learn computation over the rows the test logged, and a segment where the
challenger is significantly worse is flagged while the overall comparison looks fine."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from tests.deploy.conftest import Clock

from keel import Client
from keel.demo.data import TARGET
from keel.deploy.report import compute_report, to_markdown
from keel.deploy.service import DeploymentService
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

TEXT = ["contract", "internet_service", "payment_method"]
NUMERIC = ["senior_citizen", "tenure", "monthly_charges"]
INPUTS = NUMERIC + TEXT
#: The issue's minimal policy, as written there.
MINIMAL: dict[str, Any] = {
    "name": "churn-live",
    "model": "churn",
    "strategy": "canary",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}],
    "steps": [5, 25, 50, 100],
    "min_samples_per_step": 200,
    "min_dwell": "10m",
    "guardrails": {
        "error_rate": {"max_increase": 0.01},
        "p99_latency": {"max_ratio": 2.0, "for": "5m"},
        "metric": {"name": "roc_auc", "min_improvement": 0.02, "relative": False},
    },
}
_ids = itertools.count()


def _register(services: Services, train: pd.DataFrame) -> Any:
    """churn v1 and v2: one-hot text inputs + numeric inputs, a logistic regression."""
    encode = ColumnTransformer(
        [("text", OneHotEncoder(handle_unknown="ignore"), TEXT)], remainder="passthrough"
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=3_000)).fit(
        train[INPUTS], train[TARGET]
    )
    client = Client(settings=services.settings)
    try:
        with client.start_run("segments") as run:
            for _ in (1, 2):
                run.log_model(model, registered_name="churn", input_example=train[INPUTS][:5])
        client.set_alias("churn", "champion", 1)
    finally:
        client.close()
    return model


def _log(services: Services, rows: pd.DataFrame, start_ms: int) -> None:
    """Log every row once per arm (``score_primary``/``score_canary`` of the row) a second
    apart, then send the true labels."""
    labels = []
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for index, row in enumerate(rows.itertuples(index=False)):
            for arm, version in (("primary", 1), ("canary", 2)):
                p1 = float(getattr(row, f"score_{arm}"))
                request_id = f"seg-{next(_ids)}"
                log.append(
                    PredictionRecord(
                        request_id=request_id,
                        at_ms=start_ms + index * 1000,
                        model="churn",
                        version=version,
                        features={
                            **{c: float(getattr(row, c)) for c in NUMERIC},
                            **{c: str(getattr(row, c)) for c in TEXT},
                        },
                        output=int(p1 >= 0.5),
                        probabilities=[1 - p1, p1],
                        latency_ms=5.0,
                        deployment="churn-live",
                        arm=arm,
                    )
                )
                labels.append({"request_id": request_id, "label": int(getattr(row, TARGET))})
        assert log.flush()
    services.feedback.submit(labels)


def _scored(model: Any, rows: pd.DataFrame) -> pd.DataFrame:
    p1 = model.predict_proba(rows[INPUTS])[:, 1]
    return rows.assign(score_primary=p1, score_canary=p1)


def _setup(
    services: Services,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
    policy: dict[str, Any],
    canary: Callable[[pd.DataFrame], np.ndarray[Any, Any]] | None = None,
) -> tuple[DeploymentService, pd.DataFrame]:
    service, clock = clocked
    model = _register(services, churn_rows[0])
    service.create(policy, actor="ana")
    rows = _scored(model, churn_rows[1])
    if canary is not None:
        rows = rows.assign(score_canary=canary(rows))
    _log(services, rows, clock.now + 1)
    clock.now += len(rows) * 1000 + 10_000
    return service, rows


def _auc(rows: pd.DataFrame, arm: str) -> float:
    return float(roc_auc_score(rows[TARGET] == 1, rows[f"score_{arm}"]))


def _check_against_pandas(segments: dict[str, Any], rows: pd.DataFrame) -> int:
    """Every value's n, errors, AUC per arm and the canary-primary difference and CI equal
    pandas / scikit-learn / scipy over the logged rows; returns how many were checked."""
    checked = 0
    for column, table in segments.items():
        values = rows[column]
        if table.get("bins"):
            edges = table["bins"]
            position = np.searchsorted(np.asarray(edges), values.to_numpy(), side="right")
            labels = [f"< {edges[0]:.6g}"]
            labels += [f"[{a:.6g}, {b:.6g})" for a, b in itertools.pairwise(edges)]
            labels += [f">= {edges[-1]:.6g}"]
            keys = pd.Series(np.asarray(labels)[position], index=rows.index)
            assert edges == sorted(set(edges))
            assert edges == [
                float(values.quantile(q, interpolation="lower")) for q in (0.25, 0.5, 0.75)
            ]
        else:
            keys = values.astype(float).map(str) if column in NUMERIC else values
            keys = keys.astype(str)
        assert table["other_values"] == 0
        assert sorted(v["value"] for v in table["values"]) == sorted(keys.unique())
        for entry in table["values"]:
            part = rows[keys == entry["value"]]
            for arm, numbers in entry["arms"].items():
                assert numbers["n"] == len(part) and numbers["errors"] == 0
                if part[TARGET].nunique() == 2:
                    assert numbers["metric"]["value"] == pytest.approx(_auc(part, arm), abs=1e-9)
                    assert numbers["metric"]["n"] == len(part)
            difference = entry["differences"]["canary"]["metric"]
            if part[TARGET].nunique() < 2:
                assert difference is None
                continue
            p, c = entry["arms"]["primary"]["metric"], entry["arms"]["canary"]["metric"]
            assert difference["difference"] == pytest.approx(
                _auc(part, "canary") - _auc(part, "primary"), abs=1e-9
            )
            # Welch on the two AUC estimates: standard error from the two Hanley-McNeil errors
            se = np.hypot(p["std_error"], c["std_error"])
            df = se**4 / (p["std_error"] ** 4 / (p["n"] - 1) + c["std_error"] ** 4 / (c["n"] - 1))
            half = stats.t.ppf(0.975, df) * se
            assert difference["ci_low"] == pytest.approx(difference["difference"] - half, abs=1e-9)
            assert difference["ci_high"] == pytest.approx(difference["difference"] + half, abs=1e-9)
            checked += 1
    return checked


def test_minimal_policy_reports_default_segments_equal_to_pandas(
    services: Services,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, rows = _setup(services, churn_rows, clocked, MINIMAL)
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    segments = record.details["numbers"]["segments"]
    # the documented rule: text and few-valued inputs first (name order), then numeric
    # inputs by quartiles, five columns at most
    assert list(segments) == [*TEXT, "senior_citizen", "monthly_charges"]
    assert segments["monthly_charges"]["bins"] and "bins" not in segments["contract"]
    assert all(t["default"] for t in segments.values())
    assert _check_against_pandas(segments, rows) >= 10
    # same model on both arms: no segment is flagged
    assert record.details["numbers"]["segment_warnings"] == []
    report = compute_report(service, "churn-live")
    assert report["segments"] == segments
    assert report["segment_warnings"] == []
    text = to_markdown(report)
    assert "## Segment contract" in text and "Month-to-month" in text


def test_segments_empty_list_opts_out(
    services: Services,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    policy = {**MINIMAL, "analysis": {"segments": []}}
    service, _ = _setup(services, churn_rows, clocked, policy)
    assert service.get("churn-live").policy["analysis"]["segments"] == []
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    assert record.details["numbers"]["candidate"]["n"] > 0
    assert record.details["numbers"]["segments"] == {}
    assert compute_report(service, "churn-live")["segments"] == {}


def test_a_segment_significantly_worse_is_flagged_while_the_overall_looks_fine(
    services: Services,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    def canary(rows: pd.DataFrame) -> np.ndarray[Any, Any]:
        # better than the primary everywhere (half-way to the label), except on DSL
        # customers, whom it scores at random
        better = 0.5 * rows["score_primary"] + 0.5 * rows[TARGET]
        noise = np.random.default_rng(5).random(len(rows))
        return np.where(rows["internet_service"] == "DSL", noise, better)

    policy = {**MINIMAL, "analysis": {"segments": ["internet_service", "contract"]}}
    service, rows = _setup(services, churn_rows, clocked, policy, canary)
    assert _auc(rows, "canary") > _auc(rows, "primary")  # overall: the canary looks better
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    numbers = record.details["numbers"]
    assert numbers["candidate"]["metric"]["value"] > numbers["primary"]["metric"]["value"]
    segments = numbers["segments"]
    assert list(segments) == ["internet_service", "contract"]
    assert not any(t.get("default") for t in segments.values())
    assert _check_against_pandas(segments, rows) >= 5
    flagged = [
        (column, entry["value"])
        for column, table in segments.items()
        for entry in table["values"]
        if entry["differences"]["canary"]["worse"]
    ]
    assert flagged == [("internet_service", "DSL")]
    dsl = next(e for e in segments["internet_service"]["values"] if e["value"] == "DSL")
    assert dsl["differences"]["canary"]["metric"]["ci_high"] < 0
    warnings = numbers["segment_warnings"]
    assert [(w["arm"], w["column"], w["value"]) for w in warnings] == [
        ("canary", "internet_service", "DSL")
    ]
    report = compute_report(service, "churn-live")
    assert report["segment_warnings"] == warnings
    text = to_markdown(report)
    assert "## Warnings" in text and warnings[0]["message"] in text
    assert "internet_service=DSL" in warnings[0]["message"]
