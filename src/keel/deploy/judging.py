"""Which logged rows a deployment's metric judges (R-DEP-15), as SQL for armstats' reader.

Burn-in: rows served within ``burn_in`` of the deployment's or a step's start are left
out of the arm comparison (a novelty effect would bias it), never out of the safety
guardrails. Attribution window: a label counts only if it arrived within the window of
its request's prediction, and predictions younger than the window are pending (neither
judged nor counted as unlabelled) until their labels had the time to come.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

__all__ = [
    "attributed_labels",
    "burn_in_cuts",
    "judged_condition",
    "labelled_rows",
    "late_labels_sql",
    "literal",
    "scoped_counts",
]


def labelled_rows(columns: Sequence[str] = ()) -> str:
    """Temp table ``pl``: a few columns (and ``columns``) of view ``p``'s rows that have a
    label, read once so the window's three uses (first prediction, metric rows, late
    labels) do not scan the log three times (bench_deploy.py, 1M rows: 1.24 -> 0.51 s)."""
    more = "".join(f", {c}" for c in columns)
    return (
        f"CREATE OR REPLACE TEMP TABLE pl AS SELECT arm, ts, request_id, probabilities, output"
        f"{more} FROM p WHERE request_id IN (SELECT request_id FROM labels)"
    )


def scoped_counts(burn_in: Sequence[tuple[int, int]], mature_ms: int | None) -> str:
    """Three more columns of the per-arm counts: rows in the burn-in cuts, pending rows,
    and the rows the metric judges (what per-segment numbers split, so they add up)."""
    cut = judged_condition(burn_in, None)
    judged = judged_condition(burn_in, mature_ms)
    return (
        (f", count(*) FILTER (WHERE NOT ({cut}))" if cut else ", 0")
        + (f", count(*) FILTER (WHERE ts >= {literal(mature_ms)})" if mature_ms else ", 0")
        + (f", count(*) FILTER (WHERE {judged})" if judged else ", count(*)")
    )


def burn_in_cuts(burn_in_s: int, starts: Iterable[int], end_ms: int) -> tuple[tuple[int, int], ...]:
    """R-DEP-15: the ``[from, to)`` spans cut after each of ``starts`` (the rollout's start,
    each step's) up to ``end_ms``; none without a burn-in."""
    if not burn_in_s:
        return ()
    return tuple((s, s + burn_in_s * 1000) for s in sorted(set(starts)) if s <= end_ms)


def literal(ms: int) -> str:
    """A DuckDB TIMESTAMPTZ literal of epoch milliseconds ``ms``."""
    return f"TIMESTAMPTZ '{pd.Timestamp(ms, unit='ms', tz='UTC').isoformat()}'"


def judged_condition(
    burn_in: Sequence[tuple[int, int]], mature_ms: int | None, column: str = "ts"
) -> str:
    """SQL condition on ``column`` of the rows the metric judges; "" when it judges all:
    outside every ``[from, to)`` burn-in span and, with an attribution window, before
    ``mature_ms``."""
    parts = [
        f"NOT ({column} >= {literal(a)} AND {column} < {literal(b)})" for a, b in burn_in if b > a
    ]
    if mature_ms is not None:
        parts.append(f"{column} < {literal(mature_ms)}")
    return " AND ".join(parts)


def attributed_labels(window_s: int) -> str:
    """A relation over registered ``labels`` and table ``pl`` (:data:`LABELLED_ROWS`): only
    the labels that arrived within ``window_s`` seconds of their request's first logged
    prediction."""
    return (
        "(SELECT l.* FROM labels l JOIN (SELECT request_id, min(ts) AS pts FROM pl "
        "GROUP BY request_id) q USING (request_id) "
        f"WHERE l.received_ts <= q.pts + to_seconds({int(window_s)}))"
    )


def late_labels_sql(window_s: int, condition: str) -> str:
    """Per arm, judged requests (``condition`` on ``p.ts``) of table ``pl`` with a label
    past the window."""
    judged = f" AND {condition}" if condition else ""
    return (
        "SELECT p.arm, count(DISTINCT request_id) FROM pl p JOIN labels l USING (request_id) "
        f"WHERE l.received_ts > p.ts + to_seconds({int(window_s)}){judged} GROUP BY p.arm"
    )
