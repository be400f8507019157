"""Per-segment arm numbers in every evaluation record and the report (R-DEP-15), over a
real log: the same rows as the overall numbers (burn-in cuts and attribution window)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from tests.deploy.conftest import Clock, Models, log_traffic
from tests.deploy.test_controller import POLICY, _serve_step

from keel.deploy.report import compute_report
from keel.deploy.service import DeploymentService
from keel.errors import InvalidInput
from keel.services import Services

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_evaluation_records_carry_per_segment_numbers_of_each_arm(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    policy = {**POLICY, "analysis": {"segments": ["tenure", "monthly_charges"]}}
    service.create(policy, actor="ana")
    rows = churn_rows[1].iloc[:1200]
    _serve_step(services, models, rows, clock)
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    segments = record.details["numbers"]["segments"]
    assert set(segments) == {"tenure", "monthly_charges"}
    tenure = segments["tenure"]
    assert 0 < len(tenure["values"]) <= 20
    logged = sum(a["n"] for v in tenure["values"] for a in v["arms"].values())
    assert logged + tenure["other_values"] == len(rows)
    first = tenure["values"][0]
    assert set(first["arms"]) == {"primary", "canary"}
    # the most frequent tenure values hold both classes: an AUC per arm
    aucs = [
        a["metric"]["value"] for v in tenure["values"] for a in v["arms"].values() if a["metric"]
    ]
    assert aucs and all(0.0 <= auc <= 1.0 for auc in aucs)
    assert all(
        a["metric"] is None or a["metric"]["name"] == "roc_auc" for a in first["arms"].values()
    )


def test_a_segment_that_is_not_a_model_input_is_refused_naming_it(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    register_churn("weak", "good")
    policy = {**POLICY, "analysis": {"segments": ["tenure", "tenur"]}}
    with pytest.raises(InvalidInput, match=r"analysis\.segments\[1\]: 'tenur'") as caught:
        clocked[0].create(policy, actor="ana")
    assert caught.value.field == "analysis.segments[1]"
    assert services.deployments.list() == []


def _segment_totals(segments: dict[str, Any]) -> tuple[int, dict[str, int]]:
    """(rows in the column's table + other_values, metric n per arm) of one column."""
    rows = segments["other_values"]
    metric_n: dict[str, int] = {}
    for value in segments["values"]:
        for arm, numbers in value["arms"].items():
            rows += numbers["n"]
            if numbers["metric"]:
                metric_n[arm] = metric_n.get(arm, 0) + numbers["metric"]["n"]
    return rows, metric_n


def test_segments_judge_the_rows_the_overall_numbers_judge(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    analysis = {"segments": ["tenure"], "burn_in": "2m", "attribution_window": "30s"}
    service.create({**POLICY, "analysis": analysis}, actor="ana")
    start = clock.now
    shares = {"primary": 50.0, "canary": 50.0}
    arms = {"primary": 1, "canary": 2}

    def log(rows: pd.DataFrame, first: int, last: int) -> None:
        log_traffic(
            services,
            models,
            rows,
            deployment="churn-live",
            arms=arms,
            shares=shares,
            start_ms=first,
            end_ms=last,
        )

    production = churn_rows[1]
    clock.now = start + 430_000
    log(production.iloc[:1200], start + 130_000, start + 400_000)  # judged
    log(production.iloc[1200:1300], clock.now - 20_000, clock.now - 1)  # pending (< 30 s old)
    before = compute_report(service, "churn-live")
    # rows served inside the burn-in (the first 2 minutes) change no judged number
    log(production.iloc[1300:1700], start + 1, start + 110_000)
    after = compute_report(service, "churn-live")
    assert after["segments"] == before["segments"]
    for old, new in zip(before["arms"], after["arms"], strict=True):
        assert (new["metric"], new["n_judged"]) == (old["metric"], old["n_judged"])
        assert new["n"] - old["n"] == new["burn_in_excluded"] > 0  # guardrails see them
        assert new["pending"] == old["pending"] > 0
    judged = {a["arm"]: a for a in after["arms"]}
    assert sum(a["n_judged"] for a in judged.values()) == 1200
    assert sum(a["pending"] for a in judged.values()) == 100
    rows, metric_n = _segment_totals(after["segments"]["tenure"])
    assert rows == 1200
    # every label arrived: the judged rows with both classes in their value are the metric's
    assert all(0 < n <= judged[arm]["metric"]["n"] for arm, n in metric_n.items())
    # a segment's AUC is scikit-learn's on that value's judged rows of that arm
    frame = services.feedback.labelled("churn", start=start, end=clock.now + 1)
    frame = frame[frame["deployment"] == "churn-live"]
    first, mature = (pd.Timestamp(ms, unit="ms", tz="UTC") for ms in (start, clock.now))
    ts = frame["ts"]
    kept = frame[(ts >= first + pd.Timedelta("2min")) & (ts < mature - pd.Timedelta("30s"))]
    assert len(kept) == 1200
    checked = 0
    for value in after["segments"]["tenure"]["values"][:5]:
        for arm, numbers in value["arms"].items():
            if numbers["metric"] is None:
                continue
            rows_of = kept[(kept["arm"] == arm) & (kept["f_tenure"].astype(str) == value["value"])]
            expected = roc_auc_score(
                rows_of["label"].astype(int) == 1,
                [p[-1] for p in rows_of["probabilities"]],
            )
            assert numbers["metric"]["value"] == pytest.approx(expected, abs=1e-9)
            assert numbers["metric"]["n"] == numbers["n"] == len(rows_of)
            checked += 1
    assert checked > 0
    # the controller's evaluation record: the same rows for the arms and their segments
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    numbers = record.details["numbers"]
    assert numbers["segments"] == after["segments"]
    assert numbers["primary"]["n_judged"] + numbers["candidate"]["n_judged"] == 1200
