"""Gates that run the model (not pure: they call ``predict_proba`` and read the clock):
positive-class scores, predict latency, model size and stress rows."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from keel.automation.gates.policy import LatencyPolicy, SizePolicy, StressPolicy
from keel.automation.gates.result import GateResult, cannot_compute, judged
from keel.errors import InvalidInput

__all__ = ["latency_gate", "positive_scores", "size_gate", "stress_cases", "stress_gate"]

#: The value stress rows put in text/category columns: a category no training row had.
UNSEEN = "__keel_stress_unseen__"


def positive_scores(model: Any, features: pd.DataFrame, positive: Any = 1) -> np.ndarray:
    """The probability of ``positive`` for each row (``predict_proba``'s matching column).

    Raises InvalidInput when the model gives no probabilities (the gates need scores).
    """
    proba = np.asarray(model.predict_proba(features), dtype=np.float64)
    if proba.ndim == 1:
        return proba
    classes = list(getattr(model, "classes", None) or [])
    matches = [i for i, c in enumerate(classes) if c == positive or str(c) == str(positive)]
    return proba[:, matches[0] if matches else proba.shape[1] - 1]


def latency_gate(model: Any, features: pd.DataFrame, policy: LatencyPolicy) -> GateResult:
    """p99 wall time of ``predict_proba`` over batches of ``batch_rows`` holdout rows.

    At most ``max_batches`` batches are timed (evenly spread over the holdout), after one
    untimed warm-up call, so a large holdout costs bounded time.
    """
    if len(features) == 0:
        return cannot_compute("latency", "the holdout is empty")
    starts = np.arange(0, len(features), policy.batch_rows)
    if starts.size > policy.max_batches:
        starts = starts[np.linspace(0, starts.size - 1, policy.max_batches).astype(int)]
    model.predict_proba(features.iloc[: policy.batch_rows])  # warm-up: lazy init, caches
    times_ms = []
    for start in starts:
        batch = features.iloc[start : start + policy.batch_rows]
        began = time.perf_counter()
        model.predict_proba(batch)
        times_ms.append((time.perf_counter() - began) * 1000.0)
    p50, p99 = (float(v) for v in np.percentile(times_ms, [50, 99]))
    ok = p99 <= policy.budget_ms
    reason = (
        f"p99 {p99:.2f} ms per batch of {policy.batch_rows} row(s) "
        f"{'≤' if ok else '>'} budget {policy.budget_ms:g} ms ({len(times_ms)} batches)"
    )
    return judged(
        "latency",
        ok,
        reason,
        p99,
        policy.budget_ms,
        p50_ms=p50,
        p99_ms=p99,
        batches=len(times_ms),
        batch_rows=policy.batch_rows,
    )


def size_gate(size_bytes: int | None, policy: SizePolicy) -> GateResult:
    """The version's artifact bytes (sum of its files) within ``max_bytes``."""
    if size_bytes is None:
        return cannot_compute("size", "the artifact size is unknown")
    ok = size_bytes <= policy.max_bytes
    reason = f"artifacts {size_bytes:,} bytes {'≤' if ok else '>'} {policy.max_bytes:,}"
    return judged("size", ok, reason, float(size_bytes), float(policy.max_bytes))


def _missing_ok(signature: dict[str, Any] | None, columns: list[str]) -> list[str]:
    """Columns a request may leave empty: the signature's float columns that accept NaN and
    its nullable ones (the gateway refuses the rest with 422, so no stress row sends it)."""
    if not signature or not signature.get("inputs"):
        return columns
    from keel.serving.validation import InputSpec

    spec = InputSpec(signature)
    allowed = {
        name
        for name, nan, null in zip(spec.columns or [], spec.accepts_nan, spec.nullable, strict=True)
        if nan or null
    }
    return [c for c in columns if c in allowed]


def stress_cases(
    base: pd.DataFrame, reference: pd.DataFrame, signature: dict[str, Any] | None, factor: float
) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Named stress frames built from ``base`` rows and the columns each one alters: missing
    values, below and above ``reference``'s range by ``factor`` spans, an unseen category
    (the one edge/OOD generator: the stress gate and ``runtime.edge`` both use it)."""
    columns = [str(c) for c in base.columns]
    numeric = [
        c
        for c in columns
        if pd.api.types.is_numeric_dtype(base[c]) and not pd.api.types.is_bool_dtype(base[c])
    ]
    text = [c for c in columns if c not in numeric and not pd.api.types.is_bool_dtype(base[c])]
    integer = {
        c["name"] for c in (signature or {}).get("inputs") or [] if c["type"] in ("integer", "long")
    }
    cases: dict[str, tuple[pd.DataFrame, list[str]]] = {}
    missing = _missing_ok(signature, columns)
    if missing:
        frame = base.copy()
        everywhere = np.ones(len(base), dtype=bool)
        for c in missing:
            # mask keeps a categorical's categories (a model checks them), ints become float
            frame[c] = base[c].mask(everywhere)
        cases["missing values"] = (frame, missing)
    if numeric:
        low, high = base.copy(), base.copy()
        for c in numeric:
            values = pd.to_numeric(reference[c], errors="coerce").dropna()
            lo, hi = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
            span = max(hi - lo, 1.0)
            below, above = lo - factor * span, hi + factor * span
            if c in integer or pd.api.types.is_integer_dtype(base[c]):
                below, above = float(np.floor(below)), float(np.ceil(above))
            low[c] = np.full(len(base), below, dtype=base[c].dtype if c in integer else np.float64)
            high[c] = np.full(len(base), above, dtype=base[c].dtype if c in integer else np.float64)
        cases["below training range"] = (low, numeric)
        cases["above training range"] = (high, numeric)
    if text:
        frame = base.copy()
        for c in text:
            column = frame[c].astype("object")
            column[:] = UNSEEN
            frame[c] = (
                column.astype("category")
                if isinstance(base[c].dtype, pd.CategoricalDtype)
                else column
            )
        cases["unseen category"] = (frame, text)
    return cases


def _answers(model: Any, frame: pd.DataFrame) -> str | None:
    """Why the model's answer on ``frame`` is unacceptable (``None``: it is fine)."""
    try:
        proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
    except Exception as exc:  # whatever the model raises is the finding
        return f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    if proba.shape[0] != len(frame):
        return f"answered {proba.shape[0]} rows for {len(frame)}"
    bad = ~np.isfinite(proba) | (proba < 0) | (proba > 1)
    if bad.any():
        return f"{int(bad.any(axis=-1).sum())} row(s) with probabilities outside [0, 1] or NaN"
    return None


def stress_gate(
    model: Any,
    holdout: pd.DataFrame,
    reference: pd.DataFrame | None,
    signature: dict[str, Any] | None,
    policy: StressPolicy,
) -> GateResult:
    """The model answers missing-value, out-of-range and unseen-category rows without
    raising, with probabilities in [0, 1]; a failing case is probed per column to name it.

    ``reference`` gives the ranges (training data, else the holdout itself).
    """
    if len(holdout) == 0:
        return cannot_compute("stress", "the holdout is empty")
    base = holdout.head(policy.rows).reset_index(drop=True)
    cases = stress_cases(
        base, reference if reference is not None else holdout, signature, policy.factor
    )
    results: dict[str, str] = {}
    for name, (frame, columns) in cases.items():
        problem = _answers(model, frame)
        if problem is None:
            results[name] = "ok"
            continue
        culprits = []
        for column in columns:
            single = base.copy()
            single[column] = frame[column]
            if _answers(model, single) is not None:
                culprits.append(column)
        named = f" on {culprits}" if culprits else ""
        results[name] = f"{problem}{named}"
    failed = {k: v for k, v in results.items() if v != "ok"}
    if not results:
        return cannot_compute("stress", "no column to stress")
    reason = (
        "; ".join(f"{k}: {v}" for k, v in failed.items())
        if failed
        else f"answered every case ({', '.join(results)}) with probabilities in [0, 1]"
    )
    return judged(
        "stress",
        not failed,
        reason,
        float(len(failed)),
        0.0,
        cases=results,
        rows=len(base),
    )


def check_features(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The holdout's feature columns; InvalidInput naming ``label`` when it is absent."""
    if label not in frame.columns:
        raise InvalidInput(
            f"label column {label!r} is not in the holdout (columns: {list(frame.columns)[:20]})",
            field="label",
        )
    return frame.drop(columns=[label])
