"""Shared set-up of the R-TRN-21 rollout timing tests (``tests/deploy/test_timing*.py``).

The peak comes from real traffic in the prediction log: one week logged before the test's
clock, two predictions an hour except Sunday 17:00 UTC (the hour of ``START_MS``: 30).
:class:`Peak` (the ``peak`` fixture of ``tests/deploy/conftest.py``) holds that week, the
deployment service on the test clock and the production rows the tests serve.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tests.deploy.conftest import FEATURES, POLICY, START_MS, Clock, Models, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.decisions.models import Decision
from keel.deploy.models import Deployment
from keel.deploy.service import DeploymentService
from keel.deploy.timing import HOLD_KIND
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

HOUR_MS = 3_600_000
PEAK_HOUR = START_MS - START_MS % HOUR_MS  # Sunday 2030-03-17 17:00 UTC
PEAK_SLOT = 6 * 24 + 17
TIMING = {"avoid_peak": {"percentile": 80, "weeks": 1, "min_predictions": 100}}
TIMED = {**POLICY, "timing": TIMING}
NAME = str(POLICY["name"])


def per_hour(slot: int) -> int:
    """Background predictions logged in an hour of week: the peak slot has 30, others 2."""
    return 30 if slot == PEAK_SLOT else 2


def log_background_week(services: Services, rows: pd.DataFrame) -> np.ndarray:
    """Churn predictions (no deployment) hour by hour over the week before PEAK_HOUR; the
    count per hour of week."""
    expected = np.zeros(168)
    features = rows[FEATURES].to_dict("records")
    i = 0
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05) as log:
        for hour_ms in range(PEAK_HOUR - 7 * 24 * HOUR_MS, PEAK_HOUR, HOUR_MS):
            moment = dt.datetime.fromtimestamp(hour_ms / 1000, dt.UTC)
            slot = moment.weekday() * 24 + moment.hour
            expected[slot] = per_hour(slot)
            for k in range(per_hour(slot)):
                log.append(
                    PredictionRecord(
                        request_id=f"bg{i}",
                        at_ms=hour_ms + k * 60_000,
                        model="churn",
                        version=1,
                        features={f: float(v) for f, v in features[i % len(features)].items()},
                        output=0,
                        latency_ms=1.0,
                    )
                )
                i += 1
        assert log.flush()
    return expected


def timing_line(live_server: str) -> str:
    """``keel deploy show``'s timing line, unfolded (the console wraps at 80 columns)."""
    shown = CliRunner().invoke(cli, ["deploy", "show", NAME, "--server", live_server])
    assert shown.exit_code == 0, shown.output
    return " ".join(shown.output.split("timing:", 1)[1].split())


@dataclass
class Peak:
    """A week of background traffic logged, the deployment service on the test clock."""

    services: Services
    service: DeploymentService
    clock: Clock
    production: pd.DataFrame
    #: the background predictions per hour of week (what the peak percentile is taken of)
    expected: np.ndarray
    register: Callable[[str, str], Models]

    def create(self, first: str, second: str, at_ms: int, actor: str = "ana") -> Models:
        """Register ``first``/``second`` as churn v1/v2 and create :data:`TIMED` at ``at_ms``."""
        models = self.register(first, second)
        self.clock.now = at_ms
        self.service.create(TIMED, actor=actor)
        return models

    def serve(self, models: Models, n: int, seed: int, **kw: Any) -> Deployment | None:
        """Serve ``n`` production rows (sampled with ``seed``) over a minute, then one
        controller tick (None when it skipped the deployment)."""
        rows = self.production.sample(n, random_state=seed)
        serve_step(self.services, models, rows, self.clock, **kw)
        return self.service.evaluate(NAME)

    def holds(self) -> list[Decision]:
        """The deployment's ``timing_hold`` decisions, newest first."""
        return self.services.decisions.query(deployment=NAME, kind=HOLD_KIND)
