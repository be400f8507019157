"""R-DEP-15 in the controller's reader: burn-in cuts and the attribution window, over a real
prediction log and a labels frame, each number checked against sklearn on the rows that
should be judged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from keel.deploy.armstats import ArmWindow, read_arm_stats
from keel.serving.predlog import PredictionLog
from keel.serving.records import PredictionRecord

START = 1_900_000_000_000
MINUTE, DAY = 60_000, 86_400_000


def _traffic(root: Path, ts: np.ndarray, arm: np.ndarray, score: np.ndarray) -> list[str]:
    """Log one row per request of deployment ``d``; returns the request ids."""
    ids = [f"r{i}" for i in range(ts.size)]
    with PredictionLog(root, flush_interval_s=0.05, fsync=False) as log:
        for i in range(ts.size):
            log.append(
                PredictionRecord(
                    request_id=ids[i],
                    at_ms=int(ts[i]),
                    model="m",
                    version=1 if arm[i] == "primary" else 2,
                    features={"x": float(score[i])},
                    output=int(score[i] >= 0.5),
                    probabilities=[1 - float(score[i]), float(score[i])],
                    latency_ms=5.0,
                    deployment="d",
                    arm=str(arm[i]),
                )
            )
        assert log.flush()
    return ids


def _labels(ids: list[str], y: np.ndarray, received_ms: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "request_id": ids,
            "label": [str(int(v)) for v in y],
            "label_value": y.astype(float),
            "received_ts": pd.to_datetime(received_ms, unit="ms", utc=True),
        }
    )


def _rows(n: int, seed: int, span_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.sort(START + rng.integers(0, span_ms, n))
    arm = np.where(rng.random(n) < 0.5, "primary", "canary")
    y = (rng.random(n) < 0.3).astype(int)
    # Informative scores: the canary's are sharper than the primary's.
    noise = np.where(arm == "canary", 0.8, 1.6)
    score = 1 / (1 + np.exp(-(2 * y - 1 + rng.normal(0, 1, n) * noise)))
    return ts, arm, y, score


def test_burn_in_rows_are_left_out_of_the_metric_but_not_the_guardrails(tmp_path: Path) -> None:
    ts, arm, y, score = _rows(3_000, 1, 30 * MINUTE)
    step_start = START + 15 * MINUTE
    cuts = ((START, START + 5 * MINUTE), (step_start, step_start + 5 * MINUTE))
    burned = np.zeros(ts.size, dtype=bool)
    for a, b in cuts:
        burned |= (ts >= a) & (ts < b)
    # A novelty effect: inside the burn-in the canary's scores are inverted.
    score = np.where(burned & (arm == "canary"), 1 - score, score)
    ids = _traffic(tmp_path, ts, arm, score)
    frame = _labels(ids, y, ts + 1_000)
    end = START + 30 * MINUTE
    window = ArmWindow(START, step_start, START, end, burn_in=cuts)
    found = read_arm_stats(
        tmp_path,
        lambda: frame,
        "m",
        "d",
        ["primary", "canary"],
        window,
        primary="primary",
        metrics=["roc_auc"],
    )
    plain = read_arm_stats(
        tmp_path,
        lambda: frame,
        "m",
        "d",
        ["primary", "canary"],
        ArmWindow(START, step_start, START, end),
        primary="primary",
        metrics=["roc_auc"],
    )
    for name in ("primary", "canary"):
        mine = arm == name
        kept = mine & ~burned
        stats = found[name]
        assert stats.burn_in_excluded == int((mine & burned).sum()) > 100
        assert stats.n == int(mine.sum())  # the guardrails still see every row
        assert stats.metric is not None and stats.metric.n == int(kept.sum())
        assert stats.metric.value == pytest.approx(roc_auc_score(y[kept], score[kept]), abs=1e-12)
        assert plain[name].burn_in_excluded == 0
    # Without the cut the inverted novelty rows drag the canary's AUC down.
    assert plain["canary"].metric is not None and found["canary"].metric is not None
    assert found["canary"].metric.value - plain["canary"].metric.value > 0.1


def test_attribution_window_drops_late_labels_and_leaves_young_predictions_pending(
    tmp_path: Path,
) -> None:
    ts, arm, y, score = _rows(3_000, 2, 10 * DAY)
    delay = np.random.default_rng(3).integers(0, 4 * DAY, ts.size)  # up to 4 days to convert
    ids = _traffic(tmp_path, ts, arm, score)
    frame = _labels(ids, y, ts + delay)
    end = START + 10 * DAY
    window = ArmWindow(START, START, START, end + 1, attribution_s=2 * 86_400)
    found = read_arm_stats(
        tmp_path,
        lambda: frame,
        "m",
        "d",
        ["primary", "canary"],
        window,
        primary="primary",
        metrics=["roc_auc", "label_mean"],
    )
    mature = ts < end - 2 * DAY
    in_window = delay <= 2 * DAY
    for name in ("primary", "canary"):
        mine = arm == name
        judged = mine & mature & in_window
        stats = found[name]
        assert stats.pending == int((mine & ~mature).sum()) > 200
        assert stats.late_labels == int((mine & mature & ~in_window).sum()) > 200
        assert stats.metric is not None and stats.metric.n == int(judged.sum())
        assert stats.metric.value == pytest.approx(
            roc_auc_score(y[judged], score[judged]), abs=1e-12
        )
        mean = stats.secondary["label_mean"]
        assert mean.n == int(judged.sum())
        assert mean.value == pytest.approx(y[judged].mean(), abs=1e-12)
        assert mean.std_error == pytest.approx(y[judged].std(ddof=1) / np.sqrt(judged.sum()))
