"""Feature attribution in the canary debug report (R-DEP-21): a real churn canary that is
wrong only for high monthly charges, served at 5 % on low-charge traffic and at 25 % on
all traffic, must have monthly_charges ranked first; statistics checked against scipy and
sklearn."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.tree import DecisionTreeClassifier
from tests.deploy.conftest import FEATURES, POLICY, Clock, Models, log_traffic
from typer.testing import CliRunner

from keel import Client
from keel._models import now_ms
from keel.cli.main import app as cli
from keel.demo.data import TARGET
from keel.deploy.attribution import BAD_QUANTILE, feature_shift, gap_importance
from keel.deploy.debugging import debug_canary
from keel.deploy.service import DeploymentService
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
_ids = itertools.count()
#: The canary's training labels are flipped above this monthly charge: wrong only there.
SLICE = 90.0


def _fit(train: pd.DataFrame, flip: bool) -> DecisionTreeClassifier:
    y = train[TARGET].to_numpy().copy()
    if flip:
        inside = train["monthly_charges"].to_numpy() > SLICE
        y[inside] = 1 - y[inside]
    tree = DecisionTreeClassifier(max_depth=6, min_samples_leaf=40, random_state=0)
    return tree.fit(train[FEATURES], y)


@pytest.fixture
def models(
    services: Services, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> dict[int, DecisionTreeClassifier]:
    """churn v1 (good) and v2 (labels flipped above ``SLICE``), registered for real."""
    train = churn_rows[0]
    fitted = {1: _fit(train, flip=False), 2: _fit(train, flip=True)}
    client = Client(settings=services.settings)
    try:
        with client.start_run("attribution") as run:
            for version in (1, 2):
                run.log_model(fitted[version], registered_name="churn",
                              input_example=train[FEATURES][:5])  # fmt: skip
        client.set_alias("churn", "champion", 1)
    finally:
        client.close()
    return fitted


def _serve(
    services: Services,
    models: dict[int, Any],
    rows: pd.DataFrame,
    weights: dict[str, float],
    clock: Clock,
) -> None:
    """Log ``rows`` as churn-live's arms answer them (with a ``contract`` input neither
    model uses), send their labels, move the clock a minute on."""
    rng = np.random.default_rng(len(rows))
    arms = {"primary": 1, "canary": 2}
    names = [a for a in arms if weights.get(a, 0) > 0]
    share = np.array([weights[a] for a in names]) / sum(weights[a] for a in names)
    chosen = rng.choice(len(names), size=len(rows), p=share)
    positive = {v: models[v].predict_proba(rows[FEATURES])[:, 1] for v in (1, 2)}
    labels = []
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for i, (_, row) in enumerate(rows.iterrows()):
            arm = names[chosen[i]]
            p1 = float(positive[arms[arm]][i])
            request_id = f"attr-{next(_ids)}"
            inputs = {**{f: float(row[f]) for f in FEATURES}, "contract": str(row["contract"])}
            log.append(
                PredictionRecord(
                    request_id=request_id, at_ms=clock.now + 1 + i * 20, model="churn",
                    version=arms[arm], features=inputs, output=int(p1 >= 0.5),
                    probabilities=[1 - p1, p1], latency_ms=5.0, fallback=False,
                    deployment="churn-live", arm=arm,
                )
            )  # fmt: skip
            labels.append({"request_id": request_id, "label": int(row[TARGET])})
        assert log.flush()
    services.feedback.submit(labels)
    clock.now += 61_000


@pytest.fixture
def served(
    services: Services,
    models: dict[int, Any],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> DeploymentService:
    """churn-live: 5 % of low-charge traffic, then (the controller moved it) 25 % of all."""
    service, clock = clocked
    policy = {**POLICY, "guardrails": {"error_rate": POLICY["guardrails"]["error_rate"]}}
    service.create(policy, actor="ana")
    production = churn_rows[1]
    low = production[production["monthly_charges"] < 80]
    _serve(services, models, low.sample(1200, random_state=1),
           {"primary": 95, "canary": 5}, clock)  # fmt: skip
    service.evaluate("churn-live")
    assert service.get("churn-live").weights["canary"] == 25.0
    _serve(services, models, production.sample(1200, random_state=2),
           {"primary": 75, "canary": 25}, clock)  # fmt: skip
    return service


@SQLITE
def test_the_slice_feature_ranks_first_in_every_view(
    services: Services, models: dict[int, Any], served: DeploymentService
) -> None:
    service = served
    report = debug_canary(service, "churn-live", metric="log_loss", slices=["contract"])
    found = report["attribution"]
    assert set(found["features"]) == {*FEATURES, "contract"}
    ranked = found["bad_vs_good"]
    assert ranked[0]["feature"] == "monthly_charges" and ranked[0]["kind"] == "numeric"
    assert next(e for e in ranked if e["feature"] == "contract")["kind"] == "categorical"

    # (a) recomputed from the log independently: per-row log loss, the primary's quantile
    logged = _logged(services)
    labels = logged["label"].to_numpy(dtype=float)
    p1 = np.clip(logged["p1"].to_numpy(), 1e-15, 1 - 1e-15)
    loss = -(labels * np.log(p1) + (1 - labels) * np.log(1 - p1))
    primary = (logged["arm"] == "primary").to_numpy()
    threshold = np.quantile(loss[primary], BAD_QUANTILE)
    assert found["bad_rows"]["threshold"] == pytest.approx(threshold, abs=1e-12)
    canary = logged[~primary]
    bad = loss[~primary] > threshold
    assert found["bad_rows"]["bad"] == int(bad.sum())
    expected = ks_2samp(canary["monthly_charges"][~bad], canary["monthly_charges"][bad])
    assert ranked[0]["ks"] == pytest.approx(expected.statistic, abs=1e-12)
    assert ranked[0]["ks_pvalue"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert ranked[0]["mean"]["current"] > ranked[0]["mean"]["reference"]  # bad rows: high charges

    # the step the problem appears at (25 %) against the step before (5 %)
    steps = found["step_vs_earlier"]
    assert (steps["step"], steps["earlier_step"]) == (1, 0)
    shift = steps["input_shift"][0]
    assert shift["feature"] == "monthly_charges"
    later = (canary["at_ms"] >= report["steps"][1]["from_ms"]).to_numpy()
    assert steps["rows"] == {"earlier": int((~later).sum()), "step": int(later.sum())}
    expected = ks_2samp(canary["monthly_charges"][~later], canary["monthly_charges"][later])
    assert shift["ks"] == pytest.approx(expected.statistic, abs=1e-12)
    assert steps["bad_rate"]["step"] == pytest.approx(bad[later].mean(), abs=1e-12)

    # (b) the permutation importance of the loss gap: all labelled rows (< 5,000) sampled,
    # so the gap is sklearn's log loss difference over every row of both arms (keel clips
    # probabilities to [1e-15, 1 - 1e-15]: a tree's pure leaves answer 0 or 1)
    permutation = found["permutation"]

    def mean_loss(version: int) -> float:
        p = np.clip(models[version].predict_proba(logged[FEATURES])[:, 1], 1e-15, 1 - 1e-15)
        return float(log_loss(logged["label"], p))

    gap = mean_loss(2) - mean_loss(1)
    assert permutation["gap"] == pytest.approx(gap, abs=1e-9) and gap > 0
    assert permutation["rows"] == len(logged) and permutation["complete"], permutation
    importance = {e["feature"]: e["importance"] for e in permutation["features"]}
    assert importance["contract"] == 0.0  # neither model reads it
    # ranked by size: tenure (whose signal the canary inverts above 90) gains, and
    # shuffling monthly_charges costs the canary more than the primary (docs/deployments.md)
    assert [e["feature"] for e in permutation["features"]][:2] == ["tenure", "monthly_charges"]
    assert importance["tenure"] > 0 > importance["monthly_charges"]


@SQLITE
def test_rest_both_sdk_transports_and_the_cli_show_the_attribution(
    services: Services,
    served: DeploymentService,
    live_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # rolled back, the window ends at the rollback: the same on the real-clock embedded SDK
    served.rollback("churn-live", "slice problem", "ana")
    response = httpx.get(f"{live_server}/v1/deployments/churn-live/debug", timeout=60)
    assert response.status_code == 200, response.text
    rest = response.json()["attribution"]
    assert rest["bad_vs_good"][0]["feature"] == "monthly_charges"
    assert "gap" in rest["permutation"], rest["permutation"]
    embedded = Client(settings=services.settings)
    home = services.settings.model_copy(update={"home": tmp_path / "remote"})
    remote = Client(live_server, settings=home)
    try:
        for sdk in (embedded, remote):
            assert sdk.debug_deployment("churn-live")["attribution"] == rest
    finally:
        embedded.close()
        remote.close()
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    monkeypatch.setenv("COLUMNS", "200")  # the table's rows on one line each
    shown = CliRunner().invoke(cli, ["deploy", "debug", "churn-live"])
    assert shown.exit_code == 0, shown.output
    assert "bad rows" in shown.output and "permutation importance" in shown.output
    # the first row whose first cell is the feature (the step x slice table above it has
    # default slices such as "monthly_charges=< 24.8")
    cells = [line.split("│") for line in shown.output.splitlines() if "│" in line]
    first = "│".join(next(c for c in cells if c[1].strip() == "monthly_charges"))
    assert f"{rest['bad_vs_good'][0]['psi']:.3g}" in first
    as_json = CliRunner().invoke(cli, ["deploy", "debug", "churn-live", "--json"])
    assert json.loads(as_json.output)["attribution"] == rest


def _logged(services: Services) -> pd.DataFrame:
    """The log's rows with their labels, read back through keel's reader."""
    from keel.serving.predquery import predictions

    table = predictions("churn", root=log_root(services.settings), deployment="churn-live")
    frame = table.to_pandas()
    labels = services.feedback.labelled("churn").drop_duplicates("request_id")
    label = frame["request_id"].map(labels.set_index("request_id")["label"]).astype(float)
    return pd.DataFrame(
        {
            "arm": frame["arm"],
            "at_ms": (frame["ts"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1),
            **{f: frame[f"f_{f}"] for f in FEATURES},
            "p1": [p[-1] for p in frame["probabilities"]],
            "label": label,
        }
    )


def test_feature_shift_and_gap_importance_against_scipy_and_sklearn() -> None:
    rng = np.random.default_rng(7)
    good = pd.DataFrame({"x": rng.normal(size=400), "c": rng.choice(["a", "b"], size=400)})
    bad = pd.DataFrame({"x": rng.normal(1.0, size=120), "c": rng.choice(["a", "b"], size=120)})
    shifted = feature_shift(good, bad, ["x", "c"])
    assert [e["feature"] for e in shifted][0] == "x"
    expected = ks_2samp(good["x"], bad["x"])
    assert shifted[0]["ks"] == pytest.approx(expected.statistic, abs=1e-12)
    assert shifted[0]["ks_pvalue"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert feature_shift(good, bad.iloc[:0], ["x"]) == []

    # a gap from a model that ignores "z": its importance is exactly 0; the drops replayed
    # with the documented shuffles and sklearn's log_loss
    x = pd.DataFrame({"a": rng.normal(size=600), "z": rng.normal(size=600)})
    y = (x["a"] + rng.normal(scale=0.5, size=600) > 0).astype(float).to_numpy()
    first = LogisticRegression().fit(x[["a"]], y)
    second = LogisticRegression().fit(x[["a"]], 1 - y)

    class Uses:
        """A model reading column ``a`` of a wider frame (as a loaded keel model would)."""

        def __init__(self, model: Any) -> None:
            self.model = model

        def predict_proba(self, frame: pd.DataFrame) -> Any:
            return self.model.predict_proba(frame[["a"]])

    found = gap_importance(Uses(first), Uses(second), x, y, loss="log_loss", seed=3, repeats=2)

    def gap(frame: pd.DataFrame) -> float:
        return log_loss(y, second.predict_proba(frame[["a"]])[:, 1]) - log_loss(
            y, first.predict_proba(frame[["a"]])[:, 1]
        )

    assert found["gap"] == pytest.approx(gap(x), abs=1e-9)
    shuffles = np.random.default_rng(3)
    drops = []
    for _ in range(2):
        shuffled = x.assign(a=x["a"].to_numpy()[shuffles.permutation(600)])
        drops.append(gap(x) - gap(shuffled))
    by = {e["feature"]: e for e in found["features"]}
    assert by["a"]["importance"] == pytest.approx(np.mean(drops), abs=1e-9) and drops[0] > 0
    assert by["z"]["importance"] == 0.0


@SQLITE
def test_without_traffic_or_labels_the_attribution_says_what_it_lacks(
    services: Services,
    models: dict[int, Any],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    service.create(POLICY, actor="ana")
    clock.now += 1_000
    empty = debug_canary(service, "churn-live")["attribution"]
    assert empty["rows"] == {"candidate": 0, "primary": 0} and empty["bad_vs_good"] == []
    assert "labelled rows" in empty["permutation"]["skipped"]
    # unlabelled traffic whose canary answers fail for new customers: errors are the bad rows
    rows = churn_rows[1].iloc[:800].reset_index(drop=True)
    log_traffic(
        services, Models(models[1], models[2], models), rows, deployment="churn-live",
        arms={"primary": 1, "canary": 2}, shares={"primary": 50, "canary": 50},
        start_ms=clock.now + 1, end_ms=clock.now + 50_000, label=False,
        failing={"canary": 0.3},
    )  # fmt: skip
    clock.now += 60_000
    found = debug_canary(service, "churn-live")["attribution"]
    bad = found["bad_rows"]
    assert bad["threshold"] is None and bad["high_loss"] == 0 and bad["errors"] == bad["bad"] > 0
    assert {e["feature"] for e in found["bad_vs_good"]} == set(FEATURES)
    assert found["step_vs_earlier"] is None  # one step
    assert "0 labelled rows" in found["permutation"]["skipped"]


def test_the_cli_says_when_the_candidate_has_served_nothing(
    services: Services,
    models: dict[int, Any],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the primary answered so far: the table said "candidate's bad rows (0: 0 errors,
    0 mse > -) vs good (0)" above an empty ranking."""
    services.deployments.create(POLICY, actor="ana")
    now = now_ms()
    log_traffic(
        services, Models(models[1], models[2], models), churn_rows[1].iloc[:200],
        deployment="churn-live", arms={"primary": 1, "canary": 2},
        shares={"primary": 100, "canary": 0}, start_ms=now - 50_000, end_ms=now - 1_000,
    )  # fmt: skip
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    shown = CliRunner().invoke(cli, ["deploy", "debug", "churn-live"])
    assert shown.exit_code == 0, shown.output
    assert "feature attribution: no candidate requests in the window" in shown.output
    assert "bad rows" not in shown.output
