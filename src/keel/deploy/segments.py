"""Per-segment arm numbers for a deployment's decision records (R-DEP-15).

For each column the policy names in ``analysis.segments`` (a model input, logged as the
``f_<column>`` column of the prediction log), the rows the arm comparison judges are split
by the column's value: per value and arm the request count, errors, error rate and the
policy's metric from labels (ROC AUC inside DuckDB, the others from the joined rows). The
20 most frequent values of a column are reported; the rest are counted under
``other_values``. The numbers are reported, never used to decide: a verdict per segment
would multiply the chances of a false alarm.

The rows are exactly the overall metric's (R-DEP-15): the same :class:`ArmWindow`, the
same :func:`keel.deploy.judging.judged_condition` (rows inside a burn-in cut or younger
than the attribution window are left out) and the same label join
(:func:`keel.deploy.armstats.join_labels` with the window: a label counts only if it came
within the attribution window). So a column's ``n`` per arm, with ``other_values``, adds
up to the arm's ``n_judged``, and its metric ``n`` to the overall metric's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from keel.deploy.armstats import (
    ArmWindow,
    auc_estimates,
    create_view,
    join_labels,
    metric_estimate,
)
from keel.deploy.judging import judged_condition
from keel.serving._segments import FEATURE_PREFIX
from keel.serving.predquery import segment_files

__all__ = ["MAX_VALUES", "read_segment_stats"]

#: Values reported per segment column (the most frequent).
MAX_VALUES = 20

_COUNTS_SQL = """
SELECT CAST({col} AS VARCHAR) AS value, arm, count(*) AS n,
       count(*) FILTER (WHERE coalesce(fallback, false)
                        OR coalesce(extra, '') LIKE '%"error"%') AS errors
FROM p{judged} GROUP BY ALL
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def read_segment_stats(
    root: Path,
    labels: Callable[[], pd.DataFrame] | None,
    model: str,
    deployment: str,
    arms: Sequence[str],
    window: ArmWindow,
    segments: Sequence[str],
    metric: str | None,
) -> dict[str, Any]:
    """Column → ``{"values": [{"value", "arms": {arm: {n, errors, error_rate, metric}}}],
    "other_values": n}`` over the rows of ``[window.start_ms, window.end_ms)`` that the
    metric judges (outside ``window.burn_in``, older than its attribution window); a column
    the log lacks gets ``{"values": [], "error": …}``. Every column named is present."""
    out: dict[str, Any] = {c: {"values": [], "other_values": 0} for c in segments}
    if not segments:
        return out
    start, end = (pd.Timestamp(ms, unit="ms", tz="UTC") for ms in (window.start_ms, window.end_ms))
    files = segment_files(root, model, None, start.to_pydatetime(), end.to_pydatetime())
    if not files:
        return out
    with duckdb.connect() as con:
        create_view(con, files, deployment, window.start_ms, window.end_ms)
        logged = {row[0] for row in con.execute("DESCRIBE p").fetchall()}
        present = [c for c in segments if FEATURE_PREFIX + c in logged]
        for column in segments:
            if column not in present:
                out[column]["error"] = f"column {column!r} is not in the prediction log"
        condition = judged_condition(window.burn_in, window.mature_ms)
        judged = f" WHERE {condition}" if condition else ""
        for column in present:
            sql = _COUNTS_SQL.format(col=_ident(FEATURE_PREFIX + column), judged=judged)
            counts = con.execute(sql).fetchall()
            out[column] = _table(counts, arms)
        if metric is not None and present:
            _add_metric(con, labels, present, metric, window, out)
    return out


def _table(counts: list[tuple[Any, ...]], arms: Sequence[str]) -> dict[str, Any]:
    totals: dict[str | None, int] = {}
    for value, _, n, _ in counts:
        totals[value] = totals.get(value, 0) + int(n)
    top = sorted(totals, key=lambda v: (-totals[v], str(v)))[:MAX_VALUES]
    rows: dict[str | None, dict[str, dict[str, Any]]] = {
        v: {a: {"n": 0, "errors": 0, "error_rate": None, "metric": None} for a in arms} for v in top
    }
    for value, arm, n, errors in counts:
        if value in rows and arm in rows[value]:
            rows[value][arm] = {
                "n": int(n),
                "errors": int(errors),
                "error_rate": int(errors) / int(n) if n else None,
                "metric": None,
            }
    other = sum(n for v, n in totals.items() if v not in rows)
    return {"values": [{"value": v, "arms": rows[v]} for v in top], "other_values": other}


def _add_metric(
    con: duckdb.DuckDBPyConnection,
    labels: Callable[[], pd.DataFrame] | None,
    columns: Sequence[str],
    metric: str,
    window: ArmWindow,
    out: dict[str, Any],
) -> None:
    logged = [_ident(FEATURE_PREFIX + c) for c in columns]
    extra = [f"CAST(p.{c} AS VARCHAR) AS seg_{i}" for i, c in enumerate(logged)]
    # The overall metric's label join, window and all: the same judged rows and labels.
    with_output = metric != "roc_auc"
    if not join_labels(
        con, labels, {}, with_output=with_output, extra=extra, columns=logged, window=window
    ):
        return
    frame = None if metric == "roc_auc" else con.execute("SELECT * FROM lab").df()
    for i, column in enumerate(columns):
        if frame is None:
            found = {
                (str(v), str(a)): e for (a, v), e in auc_estimates(con, ("arm", f"seg_{i}")).items()
            }
        else:
            found = {}
            for (a, v), rows in frame.groupby(["arm", f"seg_{i}"]):
                estimate = metric_estimate(metric, rows)
                if estimate is not None:
                    found[(str(v), str(a))] = estimate
        for entry in out[column]["values"]:
            for arm, numbers in entry["arms"].items():
                estimate = found.get((str(entry["value"]), arm))
                if estimate is not None:
                    numbers["metric"] = {
                        "name": metric,
                        "value": estimate.value,
                        "std_error": estimate.std_error,
                        "n": estimate.n,
                    }
