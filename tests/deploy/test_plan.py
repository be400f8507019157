"""R-DEP-04: a canary's sample plan (keel.deploy.plan): samples per arm at each step to
detect the policy's min_improvement, from the primary's labelled rows and the model's
traffic, equal to statsmodels' power calculations; returned by create and GET, printed
by the CLI, never a refusal."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, roc_auc_score
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import proportion_effectsize
from tests.deploy.conftest import FEATURES, POLICY, START_MS, Clock, Models, log_traffic
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.client import Client
from keel.demo.data import TARGET
from keel.deploy.abstats import auc_std_error
from keel.deploy.plan import LONG_HOURS, Baseline, size_step
from keel.deploy.policy import MetricGuard
from keel.deploy.service import DeploymentService
from keel.services import Services

WEEK_MS = 7 * 24 * 3_600_000


def _solve(effect: float, ratio: float, alpha: float = 0.05, power: float = 0.8) -> float:
    return float(
        NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power, ratio=ratio)
    )


@pytest.mark.parametrize(
    ("p", "min_improvement", "relative", "higher", "share"),
    [
        (0.80, 0.02, False, True, 5.0),
        (0.80, 0.02, False, True, 50.0),
        (0.05, 0.02, True, True, 25.0),  # 2 % of 5 %: a tenth of a point
        (0.30, 0.03, False, False, 5.0),  # lower is better: 0.30 → 0.27
        (0.50, 0.01, False, True, 1.0),
    ],
)
def test_proportion_step_equals_statsmodels(
    p: float, min_improvement: float, relative: bool, higher: bool, share: float
) -> None:
    rule = MetricGuard(
        name="accuracy", min_improvement=min_improvement, relative=relative,
        higher_is_better=higher,
    )  # fmt: skip
    ratio = share / (100 - share)
    size = size_step(Baseline(p, "labelled_rows"), rule, 0.05, 0.8, ratio)
    delta = min_improvement * (p if relative else 1)
    treated = p + delta if higher else p - delta
    effect = proportion_effectsize(treated, p)
    expected = _solve(effect, ratio)
    assert size.exact == pytest.approx(expected, rel=1e-6)
    assert size.n == math.ceil(expected)
    # Exact to the solver's precision: the power at our n is the target.
    power = NormalIndPower().power(effect_size=effect, nobs1=size.exact, alpha=0.05, ratio=ratio)
    assert power == pytest.approx(0.8, abs=1e-9)


def test_mean_step_equals_zt_ind_solve_power() -> None:
    rule = MetricGuard(name="log_loss", min_improvement=0.01, higher_is_better=False)
    size = size_step(Baseline(0.45, "labelled_rows", 500, sd=0.3), rule, 0.01, 0.9, 5 / 95)
    expected = zt_ind_solve_power(
        effect_size=0.01 / 0.3, alpha=0.01, power=0.9, ratio=5 / 95, alternative="two-sided"
    )
    assert size.exact == pytest.approx(expected, rel=1e-6)


def _log_week(
    services: Services, models: Models, rows: pd.DataFrame, end_ms: int, *, label: bool = True
) -> None:
    """v1's traffic over the week before ``end_ms`` (no deployment), with labels."""
    log_traffic(
        services, models, rows, deployment="before", arms={"primary": 1},
        shares={"primary": 1.0}, start_ms=end_ms - WEEK_MS + 1, end_ms=end_ms - 1, label=label,
    )  # fmt: skip


def test_rest_create_and_get_return_the_plan_from_the_primarys_labelled_week(
    live_server: str,
    services: Services,
    clocked: tuple[DeploymentService, Clock],
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    models = register_churn("good", "weak")
    rows = churn_rows[1].iloc[:336]  # two an hour
    _log_week(services, models, rows, START_MS)
    proba = models.by_version[1].predict_proba(rows[FEATURES])[:, 1]
    accuracy = accuracy_score(rows[TARGET], (proba >= 0.5).astype(int))
    policy = {**POLICY, "guardrails": {"metric": {"name": "accuracy", "min_improvement": 0.02}}}

    created = httpx.post(f"{live_server}/v1/deployments", json=policy)
    assert created.status_code == 201, created.text
    plan = created.json()["state"]["plan"]
    assert plan["metric"] == "accuracy" and plan["method"] == "arcsine"
    assert plan["baseline_source"] == "labelled_rows" and plan["labelled_rows"] == 336
    assert plan["baseline"] == pytest.approx(accuracy, abs=1e-12)
    assert plan["label_coverage"] == 1.0
    assert plan["traffic_per_hour"] == pytest.approx(336 / 168)
    assert [s["share"] for s in plan["steps"]] == [5.0, 25.0, 50.0]
    effect = proportion_effectsize(accuracy + 0.02, accuracy)
    for step in plan["steps"]:
        ratio = step["share"] / (100 - step["share"])
        nobs1 = _solve(effect, ratio)
        assert step["samples_per_arm"] == {
            "primary": math.ceil(nobs1),
            "canary": math.ceil(nobs1 * ratio),
        }
        hours = math.ceil(nobs1 * ratio) / (2.0 * step["share"] / 100)
        assert step["expected_hours"] == pytest.approx(hours)
        # min_samples_per_step 40 is far below the sample; at 2 an hour it takes months
        assert "min_samples_per_step=40" in step["warning"]
        assert f"raise min_samples_per_step to {math.ceil(nobs1 * ratio)}" in step["warning"]
        assert (hours > LONG_HOURS) == ("more than 28 days" in step["warning"])
    assert httpx.get(f"{live_server}/v1/deployments/churn-live").json()["state"]["plan"] == plan

    # roc_auc with labelled rows: sized as a mean with the Hanley-McNeil spread per row
    url = f"{live_server}/v1/deployments/churn-live/rollback"
    assert httpx.post(url).status_code == 200
    auc_policy = {**POLICY, "name": "churn-auc"}
    created = httpx.post(f"{live_server}/v1/deployments", json=auc_policy)
    assert created.status_code == 201, created.text
    plan = created.json()["state"]["plan"]
    auc = roc_auc_score(rows[TARGET], proba)
    positives = int(rows[TARGET].sum())
    sd = auc_std_error(auc, positives, len(rows) - positives) * math.sqrt(len(rows))
    assert plan["method"] == "normal" and plan["baseline"] == pytest.approx(auc, abs=1e-12)
    assert plan["sd"] == pytest.approx(sd, rel=1e-12)
    first = plan["steps"][0]
    nobs1 = zt_ind_solve_power(effect_size=0.02 / sd, alpha=0.05, power=0.8, ratio=5 / 95)
    assert first["samples_per_arm"] == {
        "primary": math.ceil(nobs1),
        "canary": math.ceil(nobs1 * 5 / 95),
    }


def test_sdk_both_transports_training_run_baseline_and_no_traffic(
    client: Client, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    run_id = client.get_model_version("churn", 1).run_id
    assert run_id is not None
    client.log_metric(run_id, "test_auc", 0.8)
    policy = {
        **POLICY,
        "min_samples_per_step": 100_000,
        "guardrails": {"metric": {"name": "roc_auc", "min_improvement": 0.05, "relative": True}},
    }
    plan = client.create_deployment(yaml.safe_dump(policy)).state["plan"]
    assert (plan["baseline"], plan["baseline_source"], plan["method"]) == (
        0.8, "training_run", "arcsine"
    )  # fmt: skip
    assert plan["effect"] == pytest.approx(0.04) and plan["traffic_per_hour"] == 0
    assert any("no predictions of 'churn'" in note for note in plan["notes"])
    effect = proportion_effectsize(0.84, 0.8)
    for step in plan["steps"]:
        ratio = step["share"] / (100 - step["share"])
        assert step["samples_per_arm"]["primary"] == math.ceil(_solve(effect, ratio))
        # min_samples_per_step above the sample, time unknown: nothing to warn about
        assert step["expected_hours"] is None and step["warning"] is None
    assert client.get_deployment("churn-live").state["plan"] == plan


def test_no_metric_no_effect_and_other_strategies(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    deployments = services.deployments
    bare = {**POLICY, "guardrails": {}}
    plan = deployments.create(bare).state["plan"]
    assert (
        plan["metric"] is None
        and plan["steps"] == []
        and "no guardrails.metric" in (plan["notes"][0])
    )
    deployments.rollback("churn-live")
    zero = {**POLICY, "name": "zero", "guardrails": {"metric": {"name": "roc_auc"}}}
    assert "min_improvement is 0" in deployments.create(zero).state["plan"]["notes"][0]
    deployments.rollback("zero")
    blue_green = {
        "name": "bg", "model": "churn", "strategy": "blue_green",
        "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "challenger"}],
    }  # fmt: skip
    assert "plan" not in deployments.create(blue_green).state


def test_cli_create_and_show_print_the_plan(
    live_server: str,
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
) -> None:
    models = register_churn("good", "weak")
    now = services.deployments.clock()
    _log_week(services, models, churn_rows[1].iloc[:336], now)
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(POLICY))
    created = CliRunner().invoke(
        cli, ["deploy", "create", "-f", str(path), "--server", live_server]
    )
    assert created.exit_code == 0, created.output
    shown = CliRunner().invoke(cli, ["deploy", "show", "churn-live", "--server", live_server])
    assert shown.exit_code == 0, shown.output
    for output in (created.output, shown.output):
        text = " ".join(output.split())
        assert "samples: detect roc_auc +0.02 at alpha=0.05, power=0.8 (normal)" in text
        # the week ends at the test's start: its first row may have left the window since
        assert re.search(r"\(labelled_rows\), traffic (2|1\.99\d)/h", text), text
        assert "5%: primary " in text, text
        assert "more than 28 days; min_samples_per_step=40 (with min_dwell 1m)" in text
