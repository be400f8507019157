"""Synthetic test cases for replay (R-TRK-11): several versions scored on the same
generated inputs, case kind by case kind.

The rows come from the model's signature (its input columns, and which of them accept a
missing value) and the distribution of the deployment's logged requests, drawn with
``numpy.random.default_rng(seed)`` so a replay is reproducible:

* ``marginal samples``: each column drawn independently from its logged values;
* ``edge values``: each numeric cell one of the logged quantiles 0, 1, 5, 25, 50, 75, 95,
  99, 100 %, each category cell one of the logged levels (uniformly, rare ones included);
* the gates' stress cases over the marginal samples (``keel.automation.gates.measure``,
  the one stress-row generator): ``missing values`` in the columns the signature lets be
  empty, ``below``/``above training range`` (the logged range widened ``FACTOR`` spans),
  ``unseen category``.

Per case and version: rows that failed (the model raised, or answered a non-finite score;
a batch that raises is retried row by row on at most ``PROBE_ROWS`` rows), agreement of
the outputs with the first version's, PSI and KS of the scores against the first
version's (:mod:`keel.monitoring.stats`), the mean score and the latency (the batch's wall
time per row, and p50/p99 of ``TIMED_ROWS`` rows scored one at a time).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

# The gates' stress-row generator: one definition of missing / out-of-range / unseen rows.
from keel.automation.gates.measure import stress_cases
from keel.monitoring.diagnosis import model_input
from keel.monitoring.stats import ks, psi

__all__ = ["MAX_SYNTHETIC", "generate", "score_cases"]

#: Rows per case kind at most.
MAX_SYNTHETIC = 5_000
#: Logged quantiles the edge-value rows take.
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
#: Out-of-range rows sit this many logged spans beyond the logged min / max (as the gates).
FACTOR = 10.0
#: Rows scored one by one when a batch raises, and rows timed one by one.
PROBE_ROWS = 200
TIMED_ROWS = 20


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def generate(
    reference: pd.DataFrame, signature: dict[str, Any] | None, n: int, seed: int
) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Case kind → (``n`` rows, the columns the case alters), from the logged ``reference``
    rows restricted to the signature's inputs (all logged columns without a signature)."""
    names = [c["name"] for c in (signature or {}).get("inputs") or []]
    columns = [c for c in names if c in reference.columns] or [str(c) for c in reference.columns]
    reference = reference[columns].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    marginal = pd.DataFrame(index=range(n))
    edges = pd.DataFrame(index=range(n))
    for name in columns:
        values = reference[name].dropna()
        if values.empty:  # never logged with a value: all missing
            marginal[name] = edges[name] = pd.Series([np.nan] * n)
            continue
        marginal[name] = values.to_numpy()[rng.integers(0, len(values), size=n)]
        if _numeric(reference[name]):
            # nearest: values that were logged, so an integer column stays integral
            points = np.quantile(values.to_numpy(), QUANTILES, method="nearest")
            edges[name] = points[rng.integers(0, len(points), size=n)]
        else:
            levels = values.unique()
            edges[name] = levels[rng.integers(0, len(levels), size=n)]
    cases: dict[str, tuple[pd.DataFrame, list[str]]] = {
        "marginal samples": (marginal, columns),
        "edge values": (edges, columns),
    }
    cases.update(stress_cases(marginal, reference, signature, FACTOR))
    return cases


def _scores(model: Any, rows: pd.DataFrame) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(outputs, scores) of one batch: the positive-class probability, else the output."""
    output = np.asarray(model.predict(rows))
    if hasattr(model, "predict_proba"):
        try:
            return output, np.asarray(model.predict_proba(rows), dtype=np.float64)[:, -1]
        except (AttributeError, NotImplementedError, ValueError):
            pass
    return output, pd.to_numeric(pd.Series(output), errors="coerce").to_numpy(dtype=np.float64)


def _run(model: Any, frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """Score the case: the batch, else row by row on the first ``PROBE_ROWS`` rows; time
    ``TIMED_ROWS`` rows one at a time (``predict`` on the prepared input, as replay does)."""
    began = time.perf_counter()
    try:
        rows = model_input(model, frame, columns)
        output, score = _scores(model, rows)
    except Exception as exc:  # whatever the model raises is the finding
        first = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    else:
        batch_ms = (time.perf_counter() - began) * 1000
        return {"output": output, "score": score, "failed": ~np.isfinite(score),
                "checked": len(frame), "batch_ms": batch_ms, "first_error": None,
                "timed": _timings(model, rows)}  # fmt: skip
    probe = frame.head(PROBE_ROWS)
    outputs: list[Any] = []
    scores, failed_rows = [], []
    for i in range(len(probe)):
        try:
            o, s = _scores(model, model_input(model, probe.iloc[i : i + 1], columns))
            outputs.append(o[0])
            scores.append(float(s[0]))
            failed_rows.append(not np.isfinite(s[0]))
        except Exception:  # counted, like the batch's
            outputs.append(None)
            scores.append(np.nan)
            failed_rows.append(True)
    return {"output": np.array(outputs, dtype=object), "score": np.array(scores),
            "failed": np.array(failed_rows, dtype=bool), "checked": len(probe),
            "batch_ms": None, "first_error": first,
            "timed": {"p50": None, "p99": None, "rows_timed": 0}}  # fmt: skip


def _timings(model: Any, rows: pd.DataFrame) -> dict[str, Any]:
    times = []
    for i in range(min(TIMED_ROWS, len(rows))):
        began = time.perf_counter()
        model.predict(rows.iloc[i : i + 1])
        times.append((time.perf_counter() - began) * 1000)
    if not times:
        return {"p50": None, "p99": None, "rows_timed": 0}
    p50, p99 = (float(v) for v in np.percentile(times, [50, 99]))
    return {"p50": p50, "p99": p99, "rows_timed": len(times)}


def _compare(run: dict[str, Any], first: dict[str, Any]) -> dict[str, Any]:
    """Agreement and score shift of ``run`` against the first version's run (same rows)."""
    rows = min(len(run["score"]), len(first["score"]))
    same = [
        str(a) == str(b) for a, b in zip(run["output"][:rows], first["output"][:rows], strict=True)
    ]
    ok = ~(run["failed"][:rows] | first["failed"][:rows])
    mine, theirs = run["score"][:rows][ok], first["score"][:rows][ok]
    shift: dict[str, Any] = {"psi": None, "ks": None}
    if mine.size >= 2:
        shift = {
            "psi": float(psi(theirs, mine).statistic),
            "ks": float(ks(theirs, mine).statistic),
        }
    return {"agreement": float(np.mean(same)) if same else None, **shift}


def score_cases(
    cases: dict[str, tuple[pd.DataFrame, list[str]]],
    models: Sequence[tuple[int, Any]],
    columns: Sequence[str],
) -> list[dict[str, Any]]:
    """Per case kind, every ``(version, model)`` scored on the same rows (see the module
    docstring); agreement and PSI/KS are against the first version."""
    report = []
    for name, (frame, altered) in cases.items():
        runs = [_run(model, frame, columns) for _, model in models]
        versions = []
        for (version, _), run in zip(models, runs, strict=True):
            finite = run["score"][~run["failed"]]
            versions.append(
                {
                    "version": version,
                    "rows_checked": run["checked"],
                    "errors": int(run["failed"].sum()),
                    "error_rate": float(run["failed"].mean()) if run["checked"] else None,
                    "first_error": run["first_error"],
                    "score_mean": float(finite.mean()) if finite.size else None,
                    **_compare(run, runs[0]),
                    "latency_ms": {
                        "batch_per_row": None
                        if run["batch_ms"] is None
                        else run["batch_ms"] / len(frame),
                        **run["timed"],
                    },
                }
            )
        report.append({"case": name, "rows": len(frame), "columns": altered, "versions": versions})
    return report
