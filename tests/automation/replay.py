"""The closed loop replayed day by day on the telco churn table (issue #17's acceptance).

A :class:`Replay` owns a simulated clock that every automation service reads (jobs,
triggers, decisions, deployments). Each simulated day it logs that day's predictions of
the serving model with event times spread over the day, submits through the feedback API
the labels whose delay has run out, then runs the scheduler's tick at the end of the day
and drains the queue in this process like a consumer: the ``triggers.evaluate`` job
evaluates every trigger and a fired ``retrain.run`` job trains, validates and promotes.

The simulated days lie in the future of the wall clock (as tests/deploy's clock does):
labels are stamped with the wall-clock time they were received, so every label submitted
so far counts as known at each simulated evaluation, and none submitted later does —
exactly the labels whose delay has run out by that day.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tests.automation.triggerdata as data

from keel.automation.job_models import Job
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.config import Settings
from keel.decisions.models import Decision
from keel.demo.data import TARGET
from keel.services import Services, open_services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

DAY_MS = data.DAY_MS
FEATURES = data.FEATURES
TRAIN = "tests.automation.retrain_train:train"
#: 2031-01-05T00:00Z: after any wall-clock moment these tests run at.
START_MS = 1_925_337_600_000
#: Gates the replays run: the issue's margin (+0.02 AUC) and a floor; latency, size and
#: equivalence are not what these tests are about on a shared 2-core box, and the logistic
#: model has no imputer for the stress rows' NaN.
GATES: dict[str, Any] = {
    "latency": {"enabled": False},
    "equivalence": {"enabled": False},
    "stress": {"enabled": False},
    "skew": {"enabled": False},
    "floor": {"min_auc": 0.7},
}


class SimClock:
    """Epoch milliseconds the replay moves forward."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Replay:
    """Day-by-day traffic, delayed labels and the scheduler's tick on a simulated clock."""

    services: Services
    label_delay_days: int = 1
    clock: SimClock = field(default_factory=lambda: SimClock(START_MS))
    day: int = 0
    pending: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)
    ticks: list[list[Job]] = field(default_factory=list)

    def __post_init__(self) -> None:
        services = self.services
        services.jobs.clock = self.clock
        services.triggers.clock = self.clock
        services.decisions.clock = self.clock
        services.deployments.clock = self.clock
        services.deployments.decision_log.clock = self.clock

    @property
    def day_start(self) -> int:
        return START_MS + self.day * DAY_MS

    def serve(self, rows: pd.DataFrame, labels: Any = None, *, version: int | None = None) -> None:
        """Log ``rows`` as today's predictions of the champion (real scores), their labels
        (``rows.churn`` unless given) due ``label_delay_days`` later."""
        services = self.services
        served = version or services.registry.get_model("churn").aliases["champion"]
        model = services.monitors.load_model(services.registry.get_version("churn", served))
        start = self.day_start + 60_000
        ids = data.serve(
            services,
            model,
            rows,
            start,
            start + DAY_MS - 120_000,
            prefix=f"d{self.day}-",
            version=served,
        )
        truth = rows[TARGET] if labels is None else labels
        items = [{"request_id": r, "label": int(y)} for r, y in zip(ids, truth, strict=True)]
        self.pending.append((self.day + self.label_delay_days, items))

    def end_day(self) -> list[Job]:
        """Labels due today arrive; the scheduler ticks at midnight; the queue is drained.
        The jobs the tick fired."""
        self.clock.now = self.day_start + DAY_MS
        due = [items for at, items in self.pending if at <= self.day]
        self.pending = [(at, items) for at, items in self.pending if at > self.day]
        for items in due:
            self.services.feedback.submit(items)
        from tests.automation.conftest import drain  # conftest imports this module's fixtures

        fired = self.services.jobs.tick(self.clock.now)
        drain(self.services.jobs)
        self.ticks.append(fired)
        self.day += 1
        return fired

    def decisions(self, kind: str | None = None) -> list[Decision]:
        """The model's decisions (of ``kind``), oldest first."""
        found = self.services.decisions.query(model="churn", kind=kind, limit=1000)
        return list(reversed(found))


def covariate(rows: pd.DataFrame) -> pd.DataFrame:
    """A covariate shift that leaves a linear model's ranking as it was: constants added to
    three features (the inputs move; how churn depends on them does not)."""
    return rows.assign(
        tenure=rows["tenure"] + 24,
        monthly_charges=rows["monthly_charges"] + 30,
        total_charges=rows["total_charges"] + 2_000,
    )


def days_of(rows: pd.DataFrame, per_day: int) -> list[pd.DataFrame]:
    """``rows`` cut into consecutive days of ``per_day`` rows."""
    return [rows.iloc[i : i + per_day] for i in range(0, len(rows) - per_day + 1, per_day)]


def auc(y: Any, scores: Any) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y), np.asarray(scores)))


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def replay_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training rows of the champion, and the rows it never saw (the replay's traffic)."""
    return data.churn_frames()


@pytest.fixture(scope="session")
def replay_template(
    tmp_path_factory: pytest.TempPathFactory, replay_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> Path:
    """A home with churn v1 @champion (its training rows logged as the reference), built
    once and copied by each test."""
    home = tmp_path_factory.mktemp("replay-template") / "keel"
    services = open_services(Settings(home=home))
    data.register_churn(services, replay_rows[0])
    services.close()
    return home


@pytest.fixture
def replay(replay_template: Path, tmp_path: Path) -> Iterator[Replay]:
    """A replay over a copy of the template home, with the real ``retrain.run``."""
    home = tmp_path / "keel"
    shutil.copytree(replay_template, home)
    register_retrain_kind()  # the trigger tests swap in a recording stub
    services = open_services(Settings(home=home))
    try:
        yield Replay(services)
    finally:
        services.close()


def log_arms(
    replay: Replay,
    rows: pd.DataFrame,
    deployment: str,
    arms: dict[str, int],
    shares: dict[str, float],
) -> None:
    """Today's traffic of a deployment: each row answered by one arm (by its share, real
    predictions of that arm's version), labels submitted at once (the rollout's feedback)."""
    services = replay.services
    names = [a for a in arms if shares.get(a, 0) > 0]
    weights = np.array([shares[a] for a in names], dtype=float)
    chosen = np.random.default_rng(replay.day).choice(
        len(names), size=len(rows), p=weights / weights.sum()
    )
    models = {
        v: services.monitors.load_model(services.registry.get_version("churn", v))
        for v in set(arms.values())
    }
    positive = {v: np.asarray(m.predict_proba(rows[FEATURES]))[:, 1] for v, m in models.items()}
    step = (DAY_MS - 120_000) // max(len(rows), 1)
    labels = []
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05) as log:
        for i, arm_index in enumerate(chosen):
            arm = names[arm_index]
            version = arms[arm]
            p1 = float(positive[version][i])
            request_id = f"{deployment}-{replay.day}-{i}"
            log.append(
                PredictionRecord(
                    request_id=request_id,
                    at_ms=replay.day_start + 60_000 + i * step,
                    model="churn",
                    version=version,
                    features={f: float(rows[f].iloc[i]) for f in FEATURES},
                    output=int(p1 >= 0.5),
                    probabilities=[1 - p1, p1],
                    latency_ms=5.0,
                    deployment=deployment,
                    arm=arm,
                )
            )
            labels.append({"request_id": request_id, "label": int(rows[TARGET].iloc[i])})
        assert log.flush()
    services.feedback.submit(labels)
