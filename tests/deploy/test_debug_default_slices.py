"""Canary debugging (R-DEP-21) with no slices asked for and none in the policy: the step ×
slice table uses the default segments (R-DEP-15), chosen once over the whole deployment so
that a numeric input's quartile bins are the same in every step; ``segments: []`` and
explicit slices keep their meaning. Real churn models, a real prediction log and labels."""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.deploy.conftest import FEATURES, POLICY, Clock, Models
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.demo.data import TARGET
from keel.deploy.debugging import debug_canary
from keel.deploy.segments import Split
from keel.deploy.service import DeploymentService
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
_ids = itertools.count()
#: The canary fails on most rows of this contract value at its second step, 1 % elsewhere.
BAD = "One year"


def _log_step(
    services: Services,
    models: Models,
    rows: pd.DataFrame,
    *,
    weights: dict[str, float],
    clock: Clock,
    failing_bad: float,
) -> pd.DataFrame:
    """Log ``rows`` (the model's inputs and the real ``contract``) as the arms answer them,
    send their labels, move the clock a minute on; returns what was logged."""
    rng = np.random.default_rng(zlib.crc32(f"{len(rows)}|{failing_bad}".encode()))
    arms = {"primary": 1, "canary": 2}
    names = [a for a in arms if weights.get(a, 0) > 0]
    share = np.array([weights[a] for a in names]) / sum(weights[a] for a in names)
    chosen = np.asarray(names)[rng.choice(len(names), size=len(rows), p=share)]
    positive = {v: models.by_version[v].predict_proba(rows[FEATURES])[:, 1] for v in (1, 2)}
    bad = (chosen == "canary") & (rows["contract"].to_numpy() == BAD)
    failed = rng.random(len(rows)) < np.where(bad, failing_bad, 0.01)
    labels = []
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for i, row in enumerate(rows.itertuples(index=False)):
            p1 = float(positive[arms[chosen[i]]][i])
            request_id = f"dds-{next(_ids)}"
            inputs = {**{f: float(getattr(row, f)) for f in FEATURES}, "contract": row.contract}
            log.append(
                PredictionRecord(
                    request_id=request_id, at_ms=clock.now + 1 + i * 20, model="churn",
                    version=arms[chosen[i]], features=inputs, output=int(p1 >= 0.5),
                    probabilities=[1 - p1, p1], latency_ms=5.0, fallback=bool(failed[i]),
                    deployment="churn-live", arm=str(chosen[i]),
                )
            )  # fmt: skip
            labels.append({"request_id": request_id, "label": int(getattr(row, TARGET))})
        assert log.flush()
    services.feedback.submit(labels)
    clock.now += 61_000
    return rows.assign(arm=chosen, failed=failed)


def _policy(**analysis: Any) -> dict[str, Any]:
    guardrails = {**POLICY["guardrails"], "error_rate": {"max_increase": 0.5, "min_samples": 30}}
    return {**POLICY, "guardrails": guardrails, "analysis": analysis}


def test_debug_defaults_flag_the_bad_contract_with_the_same_bins_in_every_step(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    service.create(_policy(), actor="ana")  # analysis.segments not given: the defaults
    production = churn_rows[1]
    # step 0 sees short tenures only, so its own quartiles would differ from step 1's
    low = production[production["tenure"] < 40].sample(1200, random_state=1)
    first = _log_step(
        services, models, low, weights={"primary": 95, "canary": 5}, clock=clock, failing_bad=0.01
    )
    service.evaluate("churn-live")
    assert service.get("churn-live").weights["canary"] == 25.0
    rows = production.sample(1500, random_state=2)
    second = _log_step(
        services, models, rows, weights={"primary": 75, "canary": 25}, clock=clock, failing_bad=0.6
    )
    report = debug_canary(service, "churn-live")
    # the documented default: text inputs by value, then numeric ones by quartiles
    assert report["slices"] == ["contract", "monthly_charges", "tenure", "total_charges"]
    described = {s["column"]: s for s in report["slice_columns"]}
    assert all(s["default"] for s in described.values()) and "bins" not in described["contract"]
    by = {(r["step"], r["slice"]): r for r in report["rows"]}
    assert by[(1, f"contract={BAD}")]["flagged"] and not by[(0, f"contract={BAD}")]["flagged"]
    assert not any(by[(1, f"contract={v}")]["flagged"] for v in ("Month-to-month", "Two year"))
    finding = next(f for f in report["findings"] if f["slice"] == f"contract={BAD}")
    assert finding["first_flagged_step"] == 1
    # tenure's bins: quartiles (DuckDB quantile_disc = numpy inverted_cdf) of both steps' rows
    logged = pd.concat([first, second], ignore_index=True)
    edges = [float(q) for q in np.quantile(logged["tenure"], [0.25, 0.5, 0.75],
                                           method="inverted_cdf")]  # fmt: skip
    assert described["tenure"]["bins"] == edges
    labels = Split("tenure", tuple(edges)).labels()
    per_step = {
        step: {r["value"] for r in report["rows"] if r["step"] == step and r["column"] == "tenure"}
        for step in (0, 1)
    }
    assert per_step[1] == set(labels) and per_step[0] <= set(labels)
    # a binned row's numbers are the logged rows inside that bin
    row = by[(0, f"tenure={labels[0]}")]
    inside = first[first["tenure"] < edges[0]]
    for side, arm in (("primary", "primary"), ("candidate", "canary")):
        mine = inside[inside["arm"] == arm]
        assert (row[side]["n"], row[side]["errors"]) == (len(mine), int(mine["failed"].sum()))
    # the CLI's table says how it sliced, as its --json does (the CLI reads on the real
    # clock, not the test's: its window, so its bins, may differ from the report above)
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    as_json = CliRunner().invoke(cli, ["deploy", "debug", "churn-live", "--json"])
    shown = CliRunner().invoke(cli, ["deploy", "debug", "churn-live"])
    assert as_json.exit_code == 0 and shown.exit_code == 0, shown.output
    sliced_by = json.loads(as_json.output)["slice_columns"]
    assert [s["column"] for s in sliced_by] == report["slices"]
    for sliced in sliced_by:
        bins = ", ".join(f"{e:.4g}" for e in sliced.get("bins", []))
        where = f"default segment, bins at {bins}" if bins else "default segment"
        assert f"sliced by {sliced['column']} ({where})" in shown.output


@pytest.mark.parametrize(
    ("analysis", "slices", "expected"),
    [
        ({"segments": []}, None, []),  # the opt-out: no slices
        ({"segments": []}, ["contract"], [{"column": "contract", "default": False}]),
        ({"segments": ["tenure"]}, None, [{"column": "tenure", "default": False}]),
        ({}, ["tenure"], [{"column": "tenure", "default": False}]),
    ],
)
def test_debug_slices_opt_out_and_explicit_columns_are_not_defaulted(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
    analysis: dict[str, Any],
    slices: list[str] | None,
    expected: list[dict[str, Any]],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    service.create(_policy(**analysis), actor="ana")
    rows = churn_rows[1].sample(600, random_state=3)
    logged = _log_step(
        services, models, rows, weights={"primary": 95, "canary": 5}, clock=clock, failing_bad=0.01
    )
    report = debug_canary(service, "churn-live", slices=slices)
    assert report["slice_columns"] == expected
    assert report["slices"] == [e["column"] for e in expected]
    assert {r["column"] for r in report["rows"]} == {None, *report["slices"]}
    if report["slices"] == ["tenure"]:  # named: by value, not binned, one row per tenure
        values = {r["value"] for r in report["rows"] if r["column"] == "tenure"}
        assert len(values) == min(20, logged["tenure"].nunique())
