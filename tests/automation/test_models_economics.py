"""``keel models economics NAME``: λ fitted to a model's own accuracy history (the
prediction log + feedback), T* and the rest from keel.automation.economics, beside the
model's schedule triggers — embedded, through the CLI and over a live server.

The history is a "rotting" model: each day's predictions are right with probability
A(t) = 0.95·e^(−0.02·t). The fit is checked against scipy's curve_fit on the day
accuracies computed here, T* against a direct numerical minimisation of (C + S(T))/T."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from scipy.optimize import curve_fit, minimize_scalar
from sklearn.linear_model import LogisticRegression
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel import Client
from keel._models import now_ms
from keel.api.app import create_app
from keel.automation import economics as econ
from keel.cli.models import models_app
from keel.config import Settings
from keel.services import Services, open_services
from keel.serving._segments import BASE_SCHEMA
from keel.serving.predlog import log_root, partition_dir, write_segment

DAY_MS = 86_400_000
DAYS, PER_DAY = 60, 200
A0, LAMBDA = 0.95, 0.02
C, V = 500.0, 1.2  # with Q = 200/day: T* ≈ 15 days, inside the history
MONTHLY = "0 3 1 * *"
runner = CliRunner()


def _register(svc: Services, name: str) -> None:
    x = np.random.default_rng(0).normal(size=(50, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    client = Client(settings=svc.settings)
    with client.start_run("seed", capture_env=False) as run:
        version = run.log_model(model, registered_name=name, input_example=x[:3])
    client.set_alias(name, "champion", version.version)
    client.close()


def _rotting_log(svc: Services, name: str, days: int, start_ms: int) -> np.ndarray[Any, Any]:
    """``days`` days of ``PER_DAY`` predictions (all say 1) of ``name`` v1, labelled 1 with
    probability A(t); each day's accuracy as measured here."""
    rng = np.random.default_rng(42)
    root = log_root(svc.settings)
    labels, accuracy = [], []
    for day in range(days):
        at = start_ms + day * DAY_MS
        right = rng.random(PER_DAY) < A0 * math.exp(-LAMBDA * (day + 0.5))
        accuracy.append(right.mean())
        ids = [f"{name}-{day}-{i}" for i in range(PER_DAY)]
        table: dict[str, Any] = {
            "ts": pa.array(
                [at + i * 300_000 for i in range(PER_DAY)], pa.timestamp("ms", tz="UTC")
            ),
            "request_id": ids,
            "output": ["1"] * PER_DAY,
        }
        for column in BASE_SCHEMA:
            if column.name not in table:
                table[column.name] = pa.array([None] * PER_DAY, column.type)
        write_segment(pa.table(table), partition_dir(root, name, 1, at), f"part-{at}.parquet")
        labels += [{"request_id": r, "label": int(y)} for r, y in zip(ids, right, strict=True)]
    svc.feedback.submit(labels)
    return np.asarray(accuracy)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Services, np.ndarray[Any, Any]]]:
    home = tmp_path_factory.mktemp("economics") / "keel"
    svc = open_services(Settings(home=home))
    _register(svc, "rot")
    start = now_ms() - DAYS * DAY_MS
    accuracy = _rotting_log(svc, "rot", DAYS, start)
    _register(svc, "young")
    _rotting_log(svc, "young", 2, now_ms() - 2 * DAY_MS)
    retrain = {"train": "tests.automation.retrain_train:train", "label": "churn"}
    schedule = [{"metric": "schedule", "cron": MONTHLY}]
    svc.triggers.apply(
        {"name": "rot-monthly", "model": "rot", "triggers": schedule, "retrain": retrain}
    )
    yield svc, accuracy
    svc.close()


@pytest.fixture(scope="module")
def server(world: tuple[Services, Any]) -> Iterator[str]:
    with serve_in_thread(create_app(services=world[0])) as url:
        yield url


def _reference_t_star(q: float, a0: float, lam: float) -> float:
    """argmin_T (C + S(T))/T with S(T) = Q·V·A0·(T − (1 − e^(−λT))/λ), numerically."""

    def cost(t: float) -> float:
        return (C + q * V * a0 * (t - (1 - math.exp(-lam * t)) / lam)) / t

    return float(minimize_scalar(cost, bounds=(0.01, 1000), method="bounded",
                                 options={"xatol": 1e-9}).x)  # fmt: skip


def test_economics_fits_the_models_own_history(world: tuple[Services, Any]) -> None:
    svc, accuracy = world
    client = Client(settings=svc.settings)
    result = client.model_economics("rot", retrain_cost=C, value_per_point=V, manual_deploy_days=90)
    client.close()
    days = np.arange(DAYS) + 0.5
    (a0, lam), _ = curve_fit(lambda t, a, k: a * np.exp(-k * t), days, accuracy, p0=(0.9, 0.01))
    fit = result["fit"]
    assert fit["decay_per_day"] == pytest.approx(lam, rel=1e-4)
    assert fit["a0"] == pytest.approx(a0, rel=1e-4)
    assert abs(fit["decay_per_day"] - LAMBDA) < 0.004  # the truth, within sampling noise
    assert [round(p["value"], 6) for p in result["history"]] == [round(a, 6) for a in accuracy]
    assert result["queries_per_day"] == pytest.approx(PER_DAY, rel=0.01)
    report = result["report"]
    q = result["queries_per_day"]
    assert result["t_star_days"] == report["t_star_days"]
    assert report["t_star_days"] == pytest.approx(_reference_t_star(q, a0, lam), rel=1e-5)
    assert result["half_life_days"] == pytest.approx(math.log(2) / lam, rel=1e-4)
    assert report["automate"] is True  # T* (weeks) < the 90-day manual deploy
    assert {s["parameter"] for s in report["sensitivity"]} >= {"retrain_cost", "decay_per_day"}
    assert any("A(t) = A0·e^(−λt)" in note for note in report["assumptions"])
    [schedule] = result["schedules"]
    assert schedule["trigger"] == "rot-monthly" and schedule["cron"] == MONTHLY
    assert 28 <= schedule["interval_days"] <= 31
    inputs = econ.EconomicsInputs(C, q, V, min(fit["a0"], 1.0), fit["decay_per_day"])
    assert schedule["daily_cost"] == pytest.approx(
        econ.daily_cost(inputs, schedule["interval_days"])
    )
    assert "× T*" in schedule["vs_t_star"]


def test_the_cli_prints_t_star_next_to_the_schedule(
    world: tuple[Services, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, _ = world
    monkeypatch.setenv("KEEL_HOME", str(svc.settings.home))
    args = ["economics", "rot", "--retrain-cost", str(C), "--value-per-point", str(V)]
    shown = runner.invoke(models_app, args)
    assert shown.exit_code == 0, shown.output
    assert "T* (exact), days" in shown.output and "rot-monthly" in shown.output
    assert "half-life, days" in shown.output and "Assumptions" in shown.output
    as_json = runner.invoke(models_app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["t_star_days"] > 0 and body["schedules"][0]["trigger"] == "rot-monthly"


def test_over_a_server_the_answer_is_the_same(
    world: tuple[Services, Any], server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, _ = world
    local = Client(settings=svc.settings)
    remote = Client(server)
    try:
        here = local.model_economics("rot", retrain_cost=C, value_per_point=V, queries_per_day=1000)
        there = remote.model_economics(
            "rot", retrain_cost=C, value_per_point=V, queries_per_day=1000
        )
    finally:
        local.close()
        remote.close()
    assert there["t_star_days"] == pytest.approx(here["t_star_days"])
    assert there["queries_measured"] is False and there["queries_per_day"] == 1000
    args = [
        "economics",
        "rot",
        "--retrain-cost",
        str(C),
        "--value-per-point",
        str(V),
        "--server",
        server,
    ]
    shown = runner.invoke(models_app, args)
    assert shown.exit_code == 0, shown.output
    assert "T* (exact), days" in shown.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nosuch"], "nosuch"),
        (["young"], "history: young v1 has 2 bucket(s)"),
        (["rot", "--metric", "rmse"], "metric: expected one of accuracy"),
        (["rot", "--window", "soon"], "window: expected a duration"),
    ],
)
def test_bad_input_is_exit_2_naming_what_is_wrong(
    world: tuple[Services, Any], monkeypatch: pytest.MonkeyPatch, args: list[str], needle: str
) -> None:
    svc, _ = world
    monkeypatch.setenv("KEEL_HOME", str(svc.settings.home))
    shown = runner.invoke(
        models_app, ["economics", *args, "--retrain-cost", str(C), "--value-per-point", str(V)]
    )
    assert shown.exit_code == 2, shown.output
    assert needle in shown.output and "Traceback" not in shown.output


def test_bad_input_over_http(server: str) -> None:
    params = {"retrain_cost": C, "value_per_point": V}
    with httpx.Client(base_url=server, timeout=30) as http:
        unknown = http.get("/v1/models/nosuch/economics", params=params)
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "name"
        short = http.get("/v1/models/young/economics", params=params)
        assert short.status_code == 422 and "fitting λ needs 3" in short.text
        assert short.json()["error"]["field"] == "history"
        assert short.json()["error"]["detail"] == {"buckets": 2, "labelled": 400}
        negative = http.get("/v1/models/rot/economics", params={**params, "retrain_cost": -1})
        assert negative.status_code == 422 and "retrain_cost" in negative.text
        for bad in ({"queries_per_day": 0}, {"window": "100000d"}, {"change_pct": "nan"}):
            refused = http.get("/v1/models/rot/economics", params={**params, **bad})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["field"] == next(iter(bad))
        missing = http.get("/v1/models/rot/economics", params={"value_per_point": V})
        assert missing.status_code == 422 and "retrain_cost" in missing.text
