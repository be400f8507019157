"""Score gates, pure: margin over the champion, AUC floor, train/holdout gap, calibration,
per-slice non-regression. Labels and scores in, :class:`GateResult` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import brier_score_loss, roc_auc_score

from keel.automation.gates.policy import (
    CalibrationPolicy,
    FloorPolicy,
    MarginPolicy,
    OverfitPolicy,
    SlicesPolicy,
)
from keel.automation.gates.result import GateResult, cannot_compute, judged
from keel.monitoring.performance import slice_metrics

__all__ = [
    "auc",
    "calibration_gate",
    "floor_gate",
    "label_problem",
    "margin_gate",
    "overfit_gate",
    "slices_gate",
]


def label_problem(y_true: ArrayLike) -> str | None:
    """Why AUC cannot be computed on these 0/1 labels (``None``: it can).

    >>> label_problem([])
    'the holdout is empty'
    >>> label_problem([1, 1, 1])
    'the holdout has one class only (1: 3 rows)'
    """
    y = np.asarray(y_true)
    if y.size == 0:
        return "the holdout is empty"
    values, counts = np.unique(y, return_counts=True)
    if values.size < 2:
        return f"the holdout has one class only ({values[0]}: {counts[0]} rows)"
    if values.size > 2:
        return f"labels must be binary, got {values.size} classes"
    return None


def auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """ROC AUC of positive-class scores (sklearn); labels must have two classes."""
    return float(roc_auc_score(np.asarray(y_true), np.asarray(y_score, dtype=np.float64)))


def _scores_problem(y: NDArray[Any], *scores: NDArray[np.float64]) -> str | None:
    problem = label_problem(y)
    if problem:
        return problem
    for score in scores:
        if score.shape != y.shape:
            return f"{score.size} scores for {y.size} labels"
        if not np.isfinite(score).all():
            return f"{int((~np.isfinite(score)).sum())} scores are NaN or infinite"
    return None


def margin_gate(
    y_true: ArrayLike, challenger: ArrayLike, champion: ArrayLike, policy: MarginPolicy
) -> GateResult:
    """Challenger AUC ≥ champion AUC + margin (absolute) or × (1 + margin) (relative)."""
    y = np.asarray(y_true)
    new, old = np.asarray(challenger, np.float64), np.asarray(champion, np.float64)
    problem = _scores_problem(y, new, old)
    if problem:
        return cannot_compute("margin", problem, rows=int(y.size))
    new_auc, old_auc = auc(y, new), auc(y, old)
    if policy.kind == "absolute":
        required = old_auc + policy.min_improvement
    else:
        required = old_auc * (1.0 + policy.min_improvement)
    ok = new_auc >= required
    delta = new_auc - old_auc
    word = "≥" if ok else "<"
    reason = (
        f"challenger AUC {new_auc:.4f} {word} required {required:.4f} "
        f"(champion {old_auc:.4f} + {policy.kind} margin {policy.min_improvement:g}; "
        f"Δ {delta:+.4f})"
    )
    return judged(
        "margin",
        ok,
        reason,
        new_auc,
        required,
        challenger_auc=new_auc,
        champion_auc=old_auc,
        delta=delta,
        kind=policy.kind,
        min_improvement=policy.min_improvement,
        rows=int(y.size),
    )


def floor_gate(y_true: ArrayLike, challenger: ArrayLike, policy: FloorPolicy) -> GateResult:
    """Challenger AUC strictly above the floor (R-TRN-06: "auto-promote only if AUC > 0.80")."""
    y, new = np.asarray(y_true), np.asarray(challenger, np.float64)
    problem = _scores_problem(y, new)
    if problem:
        return cannot_compute("floor", problem, rows=int(y.size))
    value = auc(y, new)
    ok = value > policy.min_auc
    reason = f"challenger AUC {value:.4f} {'>' if ok else '≤'} floor {policy.min_auc:g}"
    return judged("floor", ok, reason, value, policy.min_auc, rows=int(y.size))


def overfit_gate(
    y_train: ArrayLike,
    train_scores: ArrayLike,
    y_holdout: ArrayLike,
    holdout_scores: ArrayLike,
    policy: OverfitPolicy,
) -> GateResult:
    """Train AUC minus holdout AUC ≤ ``max_gap`` (overfitting)."""
    yt, st = np.asarray(y_train), np.asarray(train_scores, np.float64)
    yh, sh = np.asarray(y_holdout), np.asarray(holdout_scores, np.float64)
    problem = _scores_problem(yt, st)
    if problem:
        return cannot_compute("overfit", f"training data: {problem.replace('holdout', 'set')}")
    problem = _scores_problem(yh, sh)
    if problem:
        return cannot_compute("overfit", problem)
    train_auc, holdout_auc = auc(yt, st), auc(yh, sh)
    gap = train_auc - holdout_auc
    ok = gap <= policy.max_gap
    reason = (
        f"train AUC {train_auc:.4f} − holdout AUC {holdout_auc:.4f} = {gap:.4f} "
        f"{'≤' if ok else '>'} {policy.max_gap:g}"
    )
    return judged(
        "overfit",
        ok,
        reason,
        gap,
        policy.max_gap,
        train_auc=train_auc,
        holdout_auc=holdout_auc,
        train_rows=int(yt.size),
    )


def calibration_gate(
    y_true: ArrayLike,
    challenger: ArrayLike,
    champion: ArrayLike | None,
    policy: CalibrationPolicy,
) -> GateResult:
    """Brier score: challenger ≤ champion + tolerance (and ≤ ``max_brier`` when set)."""
    y, new = np.asarray(y_true), np.asarray(challenger, np.float64)
    old = None if champion is None else np.asarray(champion, np.float64)
    problem = _scores_problem(y, new, *([] if old is None else [old]))
    if problem:
        return cannot_compute("calibration", problem, rows=int(y.size))
    if ((new < 0) | (new > 1)).any():
        return cannot_compute("calibration", "challenger scores outside [0, 1]")
    brier = float(brier_score_loss(y, new))
    limits: list[tuple[float, str]] = []
    numbers: dict[str, Any] = {"challenger_brier": brier, "rows": int(y.size)}
    if old is not None:
        old_brier = float(brier_score_loss(y, old))
        numbers["champion_brier"] = old_brier
        limits.append(
            (old_brier + policy.tolerance, f"champion {old_brier:.4f} + {policy.tolerance:g}")
        )
    if policy.max_brier is not None:
        limits.append((policy.max_brier, f"max_brier {policy.max_brier:g}"))
    if not limits:
        return cannot_compute("calibration", "no champion and no max_brier to compare with")
    limit, source = min(limits)
    ok = brier <= limit
    reason = f"challenger Brier {brier:.4f} {'≤' if ok else '>'} {limit:.4f} ({source})"
    return judged("calibration", ok, reason, brier, limit, **numbers)


def _auc_or_none(part: pd.DataFrame, label: str, score: str) -> float | None:
    if label_problem(part[label].to_numpy()) is not None:
        return None
    return auc(part[label], part[score])


def slice_table(
    frame: pd.DataFrame,
    label: str,
    challenger: ArrayLike,
    champion: ArrayLike,
    columns: Sequence[str],
    min_rows: int,
) -> list[dict[str, Any]]:
    """Per value of each column: rows, champion and challenger AUC (None when not judged)."""
    scored = frame[list(columns)].copy()
    scored["__y"] = np.asarray(frame[label])
    scored["__new"] = np.asarray(challenger, np.float64)
    scored["__old"] = np.asarray(champion, np.float64)

    def per(score: str) -> dict[tuple[str, str], Any]:
        results = slice_metrics(
            scored,
            list(columns),
            "auc",
            lambda part: {"auc": _auc_or_none(part, "__y", score)},
            min_rows=min_rows,
        )
        return {(r.column, str(r.value)): r for r in results}

    new, old = per("__new"), per("__old")
    rows = []
    for key, item in new.items():
        rows.append(
            {
                "column": key[0],
                "value": key[1],
                "rows": item.n,
                "champion_auc": old[key].score,
                "challenger_auc": item.score,
            }
        )
    return sorted(rows, key=lambda r: (r["column"], r["value"]))


def slices_gate(
    frame: pd.DataFrame,
    label: str,
    challenger: ArrayLike,
    champion: ArrayLike,
    policy: SlicesPolicy,
) -> tuple[GateResult, list[dict[str, Any]]]:
    """A slice regresses when it has ``min_rows`` rows and both classes and the challenger's
    AUC is below the champion's by more than ``tolerance``. Returns the gate and the table."""
    missing = [c for c in policy.columns if c not in frame.columns]
    if missing:
        return cannot_compute("slices", f"slice column(s) not in the holdout: {missing}"), []
    problem = label_problem(frame[label].to_numpy()) if len(frame) else "the holdout is empty"
    if problem:
        return cannot_compute("slices", problem), []
    table = slice_table(frame, label, challenger, champion, policy.columns, policy.min_rows)
    judged_rows = [r for r in table if r["challenger_auc"] is not None]
    for row in table:
        if row["challenger_auc"] is None:
            row["verdict"] = f"not judged (< {policy.min_rows} rows or one class)"
            continue
        row["delta"] = row["challenger_auc"] - row["champion_auc"]
        row["verdict"] = "regression" if row["delta"] < -policy.tolerance else "ok"
    if not judged_rows:
        reason = f"no slice has {policy.min_rows} rows with both classes"
        return cannot_compute("slices", reason, slices=len(table)), table
    worst = min(judged_rows, key=lambda r: r["delta"])
    regressions = [r for r in judged_rows if r["verdict"] == "regression"]
    if regressions:
        names = ", ".join(
            f"{r['column']}={r['value']} ({r['champion_auc']:.4f} → {r['challenger_auc']:.4f})"
            for r in regressions[:3]
        )
        reason = f"{len(regressions)} slice(s) regress by more than {policy.tolerance:g}: {names}"
    else:
        reason = (
            f"{len(judged_rows)} slices judged, worst {worst['column']}={worst['value']} "
            f"Δ {worst['delta']:+.4f} ≥ −{policy.tolerance:g}"
        )
    gate = judged(
        "slices",
        not regressions,
        reason,
        worst["delta"],
        -policy.tolerance,
        judged=len(judged_rows),
        regressions=len(regressions),
        worst=f"{worst['column']}={worst['value']}",
    )
    return gate, table
