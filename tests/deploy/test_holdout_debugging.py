"""Holdout lift (R-DEP-18) and canary debugging per step × slice (R-DEP-21), over a real
prediction log of real churn models; the tests checked against scipy and statsmodels."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportions_ztest
from tests.deploy.conftest import FEATURES, Clock, Models, log_traffic
from tests.deploy.test_controller import POLICY

from keel.demo.data import TARGET
from keel.deploy.debugging import debug_canary, step_windows
from keel.deploy.holdout import holdout_lift
from keel.deploy.service import DeploymentService
from keel.errors import InvalidInput, NotFound
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
_ids = itertools.count()

HOLDOUT = {
    "name": "churn-holdout",
    "model": "churn",
    "strategy": "ab",
    "arms": [
        {"version": 2, "role": "primary", "weight": 95},
        {"version": 1, "role": "challenger", "name": "holdout", "weight": 5},
    ],
}


def test_holdout_lift_of_the_champion_over_the_holdout_group(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    created = service.create(HOLDOUT, actor="ana")
    service.pause("churn-holdout", actor="ana", reason="persistent holdout")
    rows = churn_rows[1].iloc[:2000]
    log_traffic(
        services, models, rows, deployment="churn-holdout", arms=created.versions,
        shares={"primary": 80, "holdout": 20}, start_ms=clock.now + 1, end_ms=clock.now + 60_000,
    )  # fmt: skip
    clock.now += 61_000
    found = holdout_lift(service, "churn-holdout", metric="roc_auc")
    champ, base = found["champion"], found["holdout"]
    assert (champ["arm"], champ["version"], base["arm"], base["version"]) == (
        "primary", 2, "holdout", 1,
    )  # fmt: skip
    assert champ["n"] + base["n"] == 2000 and base["n"] > 300
    lift = found["lift"]
    # the good model over the noise-trained one: a large, significant AUC lift (0.157 on
    # all 2,000 rows; about 400 holdout rows put a standard error of ~0.03 on it)
    assert lift["difference"] > 0.08 and lift["ci_low"] > 0 and found["significant"]
    assert lift["difference"] == pytest.approx(
        champ["metric"]["value"] - base["metric"]["value"], abs=1e-12
    )
    assert found["relative_lift"] == pytest.approx(
        lift["difference"] / base["metric"]["value"], abs=1e-12
    )
    # the error-rate difference is the two-proportion z-test of statsmodels
    errors = found["error_rate_difference"]
    assert errors["difference"] == 0.0 and errors["pvalue"] == 1.0
    found_acc = holdout_lift(service, "churn-holdout", metric="accuracy")
    assert found_acc["metric"] == "accuracy" and found_acc["higher_is_better"]


def test_holdout_lift_refuses_bad_input_naming_the_field(
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, _ = clocked
    register_churn("weak", "good")
    service.create(HOLDOUT, actor="ana")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"holdout_arm": "nope"}, "holdout_arm"), ({"champion_arm": "x"}, "champion_arm"),
        ({"metric": "f9"}, "metric"), ({"since": "yesterday-ish"}, "since"),
        ({"holdout_arm": "primary"}, "holdout_arm"), ({"alpha": 0}, "alpha"),
    ]  # fmt: skip
    for kwargs, field in bad:
        with pytest.raises(InvalidInput) as caught:
            holdout_lift(service, "churn-holdout", **kwargs)
        assert caught.value.field == field
    with pytest.raises(NotFound):
        holdout_lift(service, "nope")


def _log_step(
    services: Services,
    models: Models,
    rows: pd.DataFrame,
    *,
    weights: dict[str, float],
    clock: Clock,
    failing_new: float,
) -> None:
    """Log rows with a ``plan`` column (tenure < 12 months: new); the canary's answers fail
    on ``failing_new`` of the new customers' rows, everything else 1 %."""
    rng = np.random.default_rng(next(_ids))
    arms = {"primary": 1, "canary": 2}
    names = [a for a in arms if weights.get(a, 0) > 0]
    share = np.array([weights[a] for a in names]) / sum(weights[a] for a in names)
    chosen = rng.choice(len(names), size=len(rows), p=share)
    positive = {v: models.by_version[v].predict_proba(rows[FEATURES])[:, 1] for v in (1, 2)}
    labels = []
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for i, (_, row) in enumerate(rows.iterrows()):
            arm = names[chosen[i]]
            p1 = float(positive[arms[arm]][i])
            plan = "new" if row["tenure"] < 12 else "old"
            fail = failing_new if (arm == "canary" and plan == "new") else 0.01
            request_id = f"dbg-{next(_ids)}"
            log.append(
                PredictionRecord(
                    request_id=request_id, at_ms=clock.now + 1 + i * 20, model="churn",
                    version=arms[arm], features={**{f: float(row[f]) for f in FEATURES},
                                                 "plan": plan},
                    output=int(p1 >= 0.5), probabilities=[1 - p1, p1], latency_ms=5.0,
                    fallback=bool(rng.random() < fail), deployment="churn-live", arm=arm,
                )
            )  # fmt: skip
            labels.append({"request_id": request_id, "label": int(row[TARGET])})
        assert log.flush()
    services.feedback.submit(labels)
    clock.now += 61_000


def test_debug_shows_a_slice_failing_only_at_the_higher_step(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    policy = {**POLICY, "guardrails": {**POLICY["guardrails"], "error_rate": {
        "max_increase": 0.5, "min_samples": 30}}}  # fmt: skip
    service.create(policy, actor="ana")
    production = churn_rows[1]
    _log_step(services, models, production.sample(1500, random_state=1),
              weights={"primary": 95, "canary": 5}, clock=clock, failing_new=0.01)  # fmt: skip
    service.evaluate("churn-live")
    assert service.get("churn-live").weights["canary"] == 25.0
    _log_step(services, models, production.sample(1500, random_state=2),
              weights={"primary": 75, "canary": 25}, clock=clock, failing_new=0.6)  # fmt: skip
    report = debug_canary(service, "churn-live", slices=["plan"])
    assert [(s["step"], s["share"]) for s in report["steps"]] == [(0, 5.0), (1, 25.0)]
    by = {(r["step"], r["slice"]): r for r in report["rows"]}
    assert set(by) >= {(0, "all"), (0, "plan=new"), (1, "plan=new"), (1, "plan=old")}
    bad = by[(1, "plan=new")]
    assert bad["flagged"] and not by[(0, "plan=new")]["flagged"]
    assert not by[(1, "plan=old")]["flagged"]
    # the error-rate test is statsmodels' two-proportion z-test on the row's counts
    c, p = bad["candidate"], bad["primary"]
    z, pvalue = proportions_ztest([c["errors"], p["errors"]], [c["n"], p["n"]])
    assert bad["error_rate_test"]["statistic"] == pytest.approx(z, abs=1e-9)
    assert bad["error_rate_test"]["pvalue"] == pytest.approx(pvalue, abs=1e-9)
    finding = next(f for f in report["findings"] if f["slice"] == "plan=new")
    assert finding["first_flagged_step"] == 1 and finding["clean_at_earlier_steps"] == [5.0]
    assert [entry["step"] for entry in report["latency"]] == [0, 1]
    missing = debug_canary(service, "churn-live", slices=["contract"])
    assert "contract" in missing["slice_errors"]


def test_debug_refuses_bad_input_naming_the_field(
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, _ = clocked
    register_churn("weak", "good")
    service.create(POLICY, actor="ana")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"arm": "primary"}, "arm"), ({"metric": "nope"}, "metric"),
        ({"alpha": 2.0}, "alpha"), ({"slices": ["c"] * 21}, "slices"),
    ]  # fmt: skip
    for kwargs, field in bad:
        with pytest.raises(InvalidInput) as caught:
            debug_canary(service, "churn-live", **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    assert step_windows([], "canary", start_ms=5, end_ms=5, first_share=5.0) == []
