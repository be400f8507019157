"""Shared set-up of the deployment tests: two real churn models and a prediction-log writer
that logs what a deployment's arms answered (deployment and arm filled) plus the labels."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from keel import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.deploy.service import DeploymentService
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

if TYPE_CHECKING:
    from tests.deploy._timing_setup import Peak

START_MS = 1_900_000_000_000  # a fixed clock: the tests move time themselves
FEATURES = ["tenure", "monthly_charges", "total_charges"]
#: The canary policy of most deployment tests: small samples, one-minute dwell.
POLICY: dict[str, Any] = {
    "name": "churn-live",
    "model": "churn",
    "strategy": "canary",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}],
    "steps": [5, 25, 50, 100],
    "min_samples_per_step": 40,
    "min_dwell": "1m",
    "guardrails": {
        "error_rate": {"max_increase": 0.01, "min_samples": 30},
        "p99_latency": {"max_ratio": 2.0, "for": "0s", "min_samples": 30},
        "metric": {"name": "roc_auc", "min_improvement": 0.02, "relative": False},
    },
}
_ids = itertools.count()


@pytest.fixture(scope="session")
def churn_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows and production rows of the telco churn table."""
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    return train, production


@dataclass
class Models:
    """churn v1 and v2 registered; ``good`` (AUC ~0.8) and ``weak`` (one noisy feature)."""

    good: Any
    weak: Any
    by_version: dict[int, Any]


def fit_models(train: pd.DataFrame) -> dict[str, Any]:
    """Churn classifiers on ``FEATURES``: "good" (AUC ~0.81 on production rows), "weak" (fit
    on noise), "shuffled" (labels shuffled: AUC ~0.51), "one_feature" (monthly_charges
    only, the other columns constant 0 so their coefficients are 0: AUC ~0.61)."""
    good = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    noise = np.random.default_rng(0).normal(size=len(train))
    weak = LogisticRegression(max_iter=2_000).fit(
        pd.DataFrame({"tenure": noise, "monthly_charges": noise, "total_charges": noise}),
        train[TARGET],
    )
    shuffled = np.random.default_rng(3).permutation(train[TARGET].to_numpy())
    worse = LogisticRegression(max_iter=2_000).fit(train[FEATURES], shuffled)
    alone = train[FEATURES].assign(tenure=0.0, total_charges=0.0)
    one_feature = LogisticRegression(max_iter=2_000).fit(alone, train[TARGET])
    return {"good": good, "weak": weak, "shuffled": worse, "one_feature": one_feature}


def register_models(
    settings: Settings, train: pd.DataFrame, first: str, second: str, model: str = "churn"
) -> Models:
    """Register ``first`` then ``second`` (names of :func:`fit_models`) as ``model`` v1, v2;
    v1 champion."""
    chosen = fit_models(train)
    client = Client(settings=settings)
    try:
        with client.start_run("deploy-tests") as run:
            for kind in (first, second):
                run.log_model(
                    chosen[kind], registered_name=model, input_example=train[FEATURES][:5]
                )
        client.set_alias(model, "champion", 1)
    finally:
        client.close()
    return Models(chosen["good"], chosen["weak"], {1: chosen[first], 2: chosen[second]})


@pytest.fixture
def register_churn(
    services: Services, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> Callable[[str, str], Models]:
    """Register ``first`` then ``second`` (see :func:`fit_models`) as churn v1, v2."""

    def register(first: str, second: str) -> Models:
        return register_models(services.settings, churn_rows[0], first, second)

    return register


def log_traffic(
    services: Services,
    models: Models,
    rows: pd.DataFrame,
    *,
    deployment: str,
    arms: dict[str, int],
    shares: dict[str, float],
    start_ms: int,
    end_ms: int,
    latency_ms: dict[str, float] | None = None,
    failing: dict[str, float] | None = None,
    label: bool = True,
) -> int:
    """Log ``rows`` as served by the arms in proportion to ``shares`` between the two times,
    with real predictions of each arm's model, then send their true labels as feedback.

    ``failing``: the share of an arm's rows logged as errors (fallback answered).
    Returns how many rows were logged.
    """
    root = log_root(services.settings)
    names = [a for a in arms if shares.get(a, 0) > 0]
    weights = np.array([shares[a] for a in names]) / sum(shares[a] for a in names)
    # Seeded by the call's own arguments, not by how many calls came before: a test sees
    # the same traffic alone and after the rest of the directory. Not by the window either:
    # tests that log on the real clock would otherwise draw a new sample each run (a holdout
    # lift was significant on most draws and not on one of them in CI).
    seed = zlib.crc32(f"{deployment}|{len(rows)}|{sorted(shares.items())}".encode())
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(names), size=len(rows), p=weights)
    step = max((end_ms - start_ms) // max(len(rows), 1), 1)
    positive = {
        v: models.by_version[v].predict_proba(rows[FEATURES])[:, 1] for v in set(arms.values())
    }
    labels = []
    with PredictionLog(root, flush_interval_s=0.05, fsync=False) as log:
        for index, arm_index in enumerate(chosen):
            arm = names[arm_index]
            version = arms[arm]
            row = rows.iloc[index]
            features = {f: float(row[f]) for f in FEATURES}
            p1 = float(positive[version][index])
            request_id = f"req-{next(_ids)}"
            failed = failing is not None and rng.random() < failing.get(arm, 0.0)
            log.append(
                PredictionRecord(
                    request_id=request_id,
                    at_ms=start_ms + index * step,
                    model="churn",
                    version=version,
                    features=features,
                    output=int(p1 >= 0.5),
                    probabilities=[1 - p1, p1],
                    latency_ms=(latency_ms or {}).get(arm, 5.0) * (0.5 + rng.random()),
                    fallback=failed,
                    deployment=deployment,
                    arm=arm,
                )
            )
            labels.append({"request_id": request_id, "label": int(row[TARGET])})
        assert log.flush()
    if label:
        services.feedback.submit(labels)
    return len(rows)


class Clock:
    """A fixed clock the tests move themselves."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clocked(services: Services) -> tuple[DeploymentService, Clock]:
    """The services' deployment service on a clock the test moves."""
    clock = Clock()
    service = services.deployments
    service.clock = clock
    service.decision_log.clock = clock
    return service, clock


def serve_step(
    services: Services, models: Models, rows: pd.DataFrame, clock: Clock, **kw: Any
) -> None:
    """Log ``rows`` as churn-live's arms serve them now (its live weights) over one minute,
    with their labels, then move the clock past that minute."""
    deployment = services.deployments.get("churn-live")
    log_traffic(
        services,
        models,
        rows,
        deployment="churn-live",
        arms=deployment.versions,
        shares=deployment.weights,
        start_ms=clock.now + 1,
        end_ms=clock.now + 60_000,
        **kw,
    )
    clock.now += 61_000


@dataclass
class Canary:
    """churn-live created from :data:`POLICY` on the test clock (v1 good, v2 weak)."""

    service: DeploymentService
    clock: Clock
    models: Models


@pytest.fixture
def canary(
    register_churn: Callable[[str, str], Models], clocked: tuple[DeploymentService, Clock]
) -> Canary:
    """The usual start of a deployment test: v1 good primary, v2 weak canary, created."""
    service, clock = clocked
    models = register_churn("good", "weak")
    service.create(POLICY, actor="ana")
    return Canary(service, clock, models)


@pytest.fixture
def peak(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> Peak:
    """The timing tests' start (tests/deploy/_timing_setup.py): a week of background traffic
    with a peak at the test clock's hour, the deployment service on that clock."""
    # imported here: that module imports this one
    from tests.deploy._timing_setup import Peak, log_background_week

    expected = log_background_week(services, churn_rows[1])
    service, clock = clocked
    return Peak(services, service, clock, churn_rows[1], expected, register_churn)
