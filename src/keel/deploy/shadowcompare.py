"""Shadow arms against the primary, from the durable prediction log (the deployment status).

A shadow arm answers copies of live requests off the response path; the copy is logged
with the live request's ``request_id``. Rows are paired by request id and position in the
request (the order each arm logged the request's rows in), so every replica's traffic
counts, not one process's counters. Per shadow arm:

- ``agreement``: classifier (probabilities logged, or a non-numeric output): the share of
  pairs with the same label; regressor: the share with
  ``|shadow - primary| <= atol + rtol * |primary|`` (``numpy.isclose``'s rule,
  :data:`RTOL` / :data:`ATOL`);
- ``distribution``: PSI and KS of the shadow's scores against the primary's (the
  positive-class probability when logged, else the numeric output; PSI over labels when
  the output is not a number), by the one implementation in :mod:`keel.monitoring.stats`;
- ``latency_ms``: p50/p99 of the paired rows of each arm (linear interpolation, as
  ``numpy.percentile``) and the p99 ratio;
- ``errors``: copies the shadow failed (not in the agreement).

Queue drops never reach the log (the copy was not run): they come from the replicas'
reports (R-DEP-06), see :func:`drops_by_replica`.

A log DuckDB cannot read (a corrupt segment) never fails the status read: each arm gets
``{"error": "prediction log unreadable: ..."}`` instead of its numbers, and one warning
is logged; the rest of the status (and each arm's drops) is unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from keel.deploy.armstats import create_view
from keel.deploy.models import ReplicaStatus
from keel.monitoring.stats import ks, psi
from keel.serving.predquery import segment_files

__all__ = ["ATOL", "RTOL", "compare_shadows", "drops_by_replica", "summarize_pairs"]

log = logging.getLogger("keel.deploy")

#: Regressor agreement: ``|shadow - primary| <= ATOL + RTOL * |primary|``.
RTOL = 0.01
ATOL = 1e-8

_PAIRS_SQL = """
WITH r AS (
    SELECT arm, request_id, CAST(output AS VARCHAR) AS o,
           TRY_CAST(CAST(output AS VARCHAR) AS DOUBLE) AS v, {score} AS score,
           latency_ms AS lat,
           (coalesce(fallback, false) OR coalesce(CAST(extra AS VARCHAR), '') LIKE '%"error"%')
               AS failed,
           row_number() OVER (PARTITION BY arm, request_id ORDER BY filename, file_row_number)
               AS k
    FROM p WHERE arm IN ({arms})
)
SELECT s.arm, pr.o = s.o AS same, {labels}pr.v AS p_value, s.v AS s_value,
       pr.score AS p_score, s.score AS s_score, pr.lat AS p_lat, s.lat AS s_lat,
       s.failed AS s_failed
FROM r s JOIN r pr ON pr.request_id = s.request_id AND pr.k = s.k AND pr.arm = $primary
WHERE s.arm <> $primary AND NOT pr.failed
"""


def _ts(ms: int) -> Any:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def compare_shadows(
    root: Path,
    model: str,
    deployment: str,
    primary: str,
    shadows: Sequence[str],
    since_ms: int,
    until_ms: int,
) -> dict[str, dict[str, Any]]:
    """Arm → the comparison of each of ``shadows`` with ``primary`` over ``[since, until)``;
    ``{"error": ...}`` per arm when the log cannot be read."""
    files = segment_files(
        root, model, None, _ts(since_ms).to_pydatetime(), _ts(until_ms).to_pydatetime()
    )
    try:
        pairs = _pairs(files, deployment, primary, shadows, since_ms, until_ms)
    except duckdb.Error as exc:
        # A status read must not fail on its optional part: the caller still gets the
        # deployment's state and drops, with the reason the comparison is missing.
        log.warning("deployment %s: shadow comparison skipped: %s", deployment, exc)
        return {arm: {"error": f"prediction log unreadable: {exc}"} for arm in shadows}
    return {arm: summarize_pairs(pairs[pairs["arm"] == arm]) for arm in shadows}


def _pairs(
    files: list[Path],
    deployment: str,
    primary: str,
    shadows: Sequence[str],
    since_ms: int,
    until_ms: int,
) -> pd.DataFrame:
    """The paired primary/shadow rows of ``files`` (DuckDB errors propagate)."""
    pairs = pd.DataFrame(columns=["arm"])
    if files and shadows:
        with duckdb.connect() as con:
            create_view(con, files, deployment, since_ms, until_ms, positions=True)
            logged = {row[0] for row in con.execute("DESCRIBE p").fetchall()}
            score = "probabilities[len(probabilities)]" if "probabilities" in logged else "NULL"
            # The outputs' text only when some are not numbers (PSI over labels): reading
            # it costs more than everything else.
            text = con.execute(
                "SELECT count(*) FROM p WHERE output IS NOT NULL "
                "AND TRY_CAST(CAST(output AS VARCHAR) AS DOUBLE) IS NULL"
            ).fetchone()
            labels = "pr.o AS p_out, s.o AS s_out, " if text and text[0] else ""
            sql = _PAIRS_SQL.format(
                score=score,
                labels=labels,
                arms=", ".join(_quote(a) for a in [primary, *shadows]),
            )
            pairs = con.execute(sql, {"primary": primary}).df()
    return pairs


def summarize_pairs(pairs: pd.DataFrame) -> dict[str, Any]:
    """The comparison of one shadow arm from its paired rows (columns of ``_PAIRS_SQL``)."""
    answered = pairs[~pairs["s_failed"].astype(bool)] if len(pairs) else pairs
    errors = len(pairs) - len(answered)
    out: dict[str, Any] = {
        "pairs": len(answered),
        "errors": errors,
        "error_rate": errors / len(pairs) if len(pairs) else None,
        "kind": None,
        "agreement": None,
        "distribution": None,
        "latency_ms": None,
    }
    if answered.empty:
        return out
    p_score = pd.to_numeric(answered["p_score"], errors="coerce").to_numpy(dtype=np.float64)
    s_score = pd.to_numeric(answered["s_score"], errors="coerce").to_numpy(dtype=np.float64)
    p_value = pd.to_numeric(answered["p_value"], errors="coerce").to_numpy(dtype=np.float64)
    s_value = pd.to_numeric(answered["s_value"], errors="coerce").to_numpy(dtype=np.float64)
    numeric = bool(np.isfinite(p_value).all() and np.isfinite(s_value).all())
    with_proba = bool(np.isfinite(p_score).any())
    if with_proba or not numeric:
        out["kind"] = "classifier"
        same = answered["same"].to_numpy(dtype=bool)
    else:
        out["kind"] = "regressor"
        same = np.abs(s_value - p_value) <= ATOL + RTOL * np.abs(p_value)
        out["tolerance"] = {"rtol": RTOL, "atol": ATOL}
    out["agreement"] = float(np.mean(same))
    out["distribution"] = _distribution(answered, p_score, s_score, p_value, s_value, numeric)
    out["latency_ms"] = _latency(answered)
    return out


def _distribution(
    answered: pd.DataFrame,
    p_score: np.ndarray[Any, Any],
    s_score: np.ndarray[Any, Any],
    p_value: np.ndarray[Any, Any],
    s_value: np.ndarray[Any, Any],
    numeric: bool,
) -> dict[str, Any]:
    if np.isfinite(p_score).any() and np.isfinite(s_score).any():
        on, ref, cur = "probability", p_score, s_score
    elif numeric:
        on, ref, cur = "output", p_value, s_value
    else:  # labels that are not numbers: PSI over the labels, KS undefined
        labels = psi(answered["p_out"].to_numpy(), answered["s_out"].to_numpy())
        return {"on": "label", "psi": float(labels.statistic), "ks": None, "ks_pvalue": None}
    shift, test = psi(ref, cur), ks(ref, cur)
    return {
        "on": on,
        "psi": float(shift.statistic),
        "ks": float(test.statistic),
        "ks_pvalue": None if test.pvalue is None else float(test.pvalue),
    }


def _latency(answered: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side, column in (("primary", "p_lat"), ("shadow", "s_lat")):
        values = pd.to_numeric(answered[column], errors="coerce").dropna().to_numpy(np.float64)
        out[side] = (
            {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}
            if values.size
            else None
        )
    ratio = None
    if out["primary"] and out["shadow"] and out["primary"]["p99"] > 0:
        ratio = out["shadow"]["p99"] / out["primary"]["p99"]
    out["p99_ratio"] = ratio
    return out


def drops_by_replica(replicas: Sequence[ReplicaStatus], arm: str) -> dict[str, Any]:
    """Shadow copies of ``arm`` each replica dropped (full queue or bulkhead), as last
    reported, and their total."""
    by_replica = {r.replica: int(r.shadow.get(f"{arm}:dropped", 0)) for r in replicas}
    return {"total": sum(by_replica.values()), "by_replica": by_replica}
