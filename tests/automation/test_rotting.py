"""The "rotting asset" simulation reproduces seed 001's figure (R-TRN-19)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from numpy.typing import NDArray

from keel.automation import rotting
from keel.automation.rotting import simulate_rotting_asset
from keel.errors import InvalidInput


def _seed_figure() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Seed 001's code for fig-rotting-asset-curve, verbatim apart from plotting."""
    days = np.arange(0, 365, 1)
    baseline_acc = 0.90
    decay_rate = 0.0003
    threshold = 0.82
    retrain_interval = 90
    decay = np.exp(-decay_rate * days) * baseline_acc
    sawtooth = np.copy(decay)
    triggered = np.copy(decay)
    for i in range(retrain_interval, 365, retrain_interval):
        sawtooth[i:] = np.exp(-decay_rate * (days[i:] - i)) * baseline_acc
    last_trigger = 0
    for i in range(1, len(days)):
        acc = np.exp(-decay_rate * (days[i] - last_trigger)) * baseline_acc
        if acc < threshold:
            last_trigger = i
            acc = baseline_acc
        triggered[i] = acc
    return sawtooth, triggered


def test_rotting_asset_matches_the_seed_curves() -> None:
    sawtooth, triggered = _seed_figure()
    sim = simulate_rotting_asset()
    np.testing.assert_allclose(sim.scheduled.accuracy, sawtooth, rtol=1e-12)
    np.testing.assert_allclose(sim.triggered.accuracy, triggered, rtol=1e-12)


def test_rotting_asset_scheduled_retrains_four_times_triggered_once() -> None:
    sim = simulate_rotting_asset()
    assert sim.scheduled.retrain_days == (90, 180, 270, 360)
    # 0.90·e^(−0.0003·311) < 0.82 ≤ 0.90·e^(−0.0003·310): the trigger fires on day 311
    assert sim.triggered.retrain_days == (311,)
    assert sim.triggered.accuracy[310] == pytest.approx(0.82007, abs=1e-5)
    assert sim.triggered.accuracy[311] == 0.90


def test_rotting_asset_schedule_retrains_long_before_it_is_needed() -> None:
    # The seed's point: the schedule retrains regardless of whether degradation
    # occurred; its lowest accuracy (0.876) is far above the 0.82 threshold, and the
    # trigger holds the same threshold with a quarter of the retrainings.
    sim = simulate_rotting_asset()
    assert sim.scheduled.min_accuracy == pytest.approx(0.90 * np.exp(-0.0003 * 89), rel=1e-12)
    assert sim.scheduled.min_accuracy > sim.threshold + 0.05
    assert sim.scheduled.days_below_threshold == sim.triggered.days_below_threshold == 0
    assert sim.triggered.min_accuracy >= sim.threshold
    assert sim.triggered.retrainings * 4 == sim.scheduled.retrainings
    assert sim.scheduled.mean_accuracy > sim.triggered.mean_accuracy  # what the extra spend buys


def test_rotting_asset_triggers_repeat_at_the_same_age() -> None:
    sim = simulate_rotting_asset(decay_per_day=0.003, horizon_days=200)
    gaps = np.diff((0, *sim.triggered.retrain_days))
    assert len(set(gaps.tolist())) == 1 and gaps[0] == 32  # ln(0.9/0.82)/0.003 = 31.03
    assert sim.triggered.days_below_threshold == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baseline": 1.2}, "baseline"),
        ({"decay_per_day": 0}, "decay_per_day"),
        ({"threshold": 0.95}, "threshold"),
        ({"horizon_days": 0}, "horizon_days"),
        ({"retrain_interval_days": 1.5}, "retrain_interval_days"),
    ],
)
def test_rotting_asset_invalid_input_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        simulate_rotting_asset(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_rotting_docstring_example_runs() -> None:
    result = doctest.testmod(rotting)
    assert result.attempted > 0 and result.failed == 0
