"""Synthetic test cases in replay (R-TRK-11): generated rows from the model's signature and
the logged distribution, every version scored on the same rows, seeded and reproducible;
real churn models, numbers checked against scipy and sklearn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from tests.deploy.conftest import FEATURES, START_MS, Canary, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.client import Client
from keel.deploy.synthetic import QUANTILES, generate, score_cases
from keel.errors import InvalidInput
from keel.services import Services

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _steady(report: dict[str, Any]) -> dict[str, Any]:
    """The synthetic section without timings (they differ from run to run)."""
    return {
        **{k: v for k, v in report.items() if k != "cases"},
        "cases": [
            {**c, "versions": [{k: v for k, v in r.items() if k != "latency_ms"}
                               for r in c["versions"]]}
            for c in report["cases"]
        ],
    }  # fmt: skip


@SQLITE
def test_synthetic_cases_score_every_version_on_the_same_rows(
    services: Services, canary: Canary, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    service, models = canary.service, canary.models
    rows = churn_rows[1].iloc[:300]
    serve_step(services, models, rows, canary.clock)
    report = service.replay("churn-live", [1, 2], since=START_MS, synthetic=200, seed=5)
    assert [v["version"] for v in report["versions"]] == [1, 2]  # the logged replay stays
    found = report["synthetic"]
    assert (found["rows_per_case"], found["seed"], found["compared_with"]) == (200, 5, 1)
    by = {c["case"]: c for c in found["cases"]}
    # LogisticRegression refuses NaN, so its signature allows no missing value: no such case
    assert set(by) == {
        "marginal samples", "edge values", "below training range", "above training range",
    }  # fmt: skip
    # the same rows, regenerated from the logged inputs with the seed, scored by the models
    logged = rows[FEATURES].reset_index(drop=True)
    cases = generate(logged, None, 200, 5)
    for name, case in by.items():
        frame = cases[name][0]
        assert case["rows"] == 200 and case["columns"] == FEATURES
        first, second = case["versions"]
        assert first["agreement"] == 1.0 and first["ks"] == 0.0 and first["errors"] == 0
        good = models.good.predict_proba(frame[FEATURES])[:, 1]
        weak = models.weak.predict_proba(frame[FEATURES])[:, 1]
        assert first["score_mean"] == pytest.approx(good.mean(), abs=1e-12)
        assert second["score_mean"] == pytest.approx(weak.mean(), abs=1e-12)
        same = models.good.predict(frame[FEATURES]) == models.weak.predict(frame[FEATURES])
        assert second["agreement"] == pytest.approx(same.mean(), abs=1e-12)
        assert second["ks"] == pytest.approx(ks_2samp(good, weak).statistic, abs=1e-12)
        assert second["latency_ms"]["p99"] >= second["latency_ms"]["p50"] > 0
    # reproducible with the seed (timings aside), different with another
    again = service.replay("churn-live", [1, 2], since=START_MS, synthetic=200, seed=5)
    assert _steady(again["synthetic"]) == _steady(found)
    other = service.replay("churn-live", [1, 2], since=START_MS, synthetic=200, seed=6)
    assert _steady(other["synthetic"])["cases"] != _steady(found)["cases"]
    assert "synthetic" not in service.replay("churn-live", [1], since=START_MS)
    with pytest.raises(InvalidInput) as caught:
        service.replay("churn-live", [1], since=START_MS, synthetic=0)
    assert caught.value.field == "synthetic"


def test_generated_rows_come_from_the_logged_values_and_quantiles() -> None:
    rng = np.random.default_rng(1)
    logged = pd.DataFrame(
        {"tenure": rng.integers(0, 72, size=500), "charges": rng.gamma(2.0, 30.0, size=500),
         "contract": rng.choice(["month", "one year", "two year"], size=500)}
    )  # fmt: skip
    signature = {"inputs": [
        {"name": "tenure", "type": "long"}, {"name": "charges", "type": "double"},
        {"name": "contract", "type": "string", "nullable": True},
    ]}  # fmt: skip
    cases = generate(logged, signature, 300, seed=2)
    marginal, edges = cases["marginal samples"][0], cases["edge values"][0]
    for name in ("tenure", "charges", "contract"):
        assert set(marginal[name]) <= set(logged[name])
    for name in ("tenure", "charges"):
        points = set(np.quantile(logged[name], QUANTILES, method="nearest"))
        assert set(edges[name]) <= points and len(set(edges[name])) == len(points)
    assert set(edges["contract"]) == set(logged["contract"])
    assert marginal["tenure"].dtype == logged["tenure"].dtype  # integral stays integral
    # the gates' stress cases over the marginal rows: never the integer column (no NaN)
    missing, altered = cases["missing values"]
    assert "contract" in altered and "tenure" not in altered
    assert marginal["contract"].notna().all() and missing["contract"].isna().all()
    above = cases["above training range"][0]
    assert (above["charges"] > logged["charges"].max()).all()
    assert "unseen category" in cases
    same = generate(logged, signature, 300, seed=2)
    assert all(same[k][0].equals(cases[k][0]) for k in cases)


def test_errors_are_counted_per_case_and_version() -> None:
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (x["a"] > 0).astype(int)
    models: list[tuple[int, Any]] = [
        (1, DecisionTreeClassifier(max_depth=3).fit(x, y)),  # takes NaN
        (2, LogisticRegression().fit(x, y)),  # raises on NaN
    ]
    cases = {"missing values": (x.head(300).assign(b=np.nan), ["b"])}
    found = score_cases(cases, models, ["a", "b"])[0]["versions"]
    assert found[0]["errors"] == 0 and found[0]["rows_checked"] == 300
    assert found[1]["errors"] == found[1]["rows_checked"] == 200  # probed row by row
    assert found[1]["error_rate"] == 1.0 and "ValueError" in found[1]["first_error"]
    assert found[1]["agreement"] == 0.0 and found[1]["psi"] is None


@SQLITE
def test_rest_both_sdk_transports_and_the_cli(
    services: Services,
    canary: Canary,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    live_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve_step(services, canary.models, churn_rows[1].iloc[:200], canary.clock)
    body = {"versions": [1, 2], "since": START_MS, "synthetic": 50, "seed": 4}
    url = f"{live_server}/v1/deployments/churn-live/replay"
    response = httpx.post(url, json=body, timeout=60)
    assert response.status_code == 200, response.text
    rest = _steady(response.json()["synthetic"])
    embedded = Client(settings=services.settings)
    remote = Client(
        live_server, settings=services.settings.model_copy(update={"home": tmp_path / "remote"})
    )
    try:
        for sdk in (embedded, remote):
            found = sdk.replay_deployment("churn-live", [1, 2], START_MS, synthetic=50, seed=4)
            assert _steady(found["synthetic"]) == rest
            for kwargs, field in (({"synthetic": 0}, "synthetic"), ({"seed": -1}, "seed")):
                with pytest.raises(InvalidInput) as caught:
                    sdk.replay_deployment("churn-live", [1], START_MS, **kwargs)
                assert caught.value.field == field
    finally:
        embedded.close()
        remote.close()
    for bad, field in (({"synthetic": 0}, "synthetic"), ({"synthetic": 10**6}, "synthetic"),
                       ({"seed": "x"}, "seed")):  # fmt: skip
        refused = httpx.post(url, json={**body, **bad}, timeout=60)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == field
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    base = ["deploy", "replay", "churn-live", "--versions", "1,2", "--since", str(START_MS)]
    shown = runner.invoke(cli, [*base, "--synthetic", "50", "--seed", "4"])
    assert shown.exit_code == 0, shown.output
    # (the case names are checked in the JSON: the shared Rich console keeps the width it
    # had when first imported, and folds long cells at 80 columns)
    assert "synthetic cases" in shown.output and "50 rows per case (seed 4)" in shown.output
    as_json = runner.invoke(cli, [*base, "--synthetic", "50", "--seed", "4", "--json"])
    assert _steady(json.loads(as_json.output)["synthetic"]) == rest
    refused_cli = runner.invoke(cli, [*base, "--synthetic", "0"])
    assert refused_cli.exit_code == 2 and "--synthetic" in refused_cli.output
