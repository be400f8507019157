"""Per-segment arm numbers for a deployment's decision records and report (R-DEP-15).

Per-segment results are always reported. The columns are the policy's
``analysis.segments`` (model inputs, logged as the ``f_<column>`` columns of the prediction
log) or, when the policy does not say, a default chosen on each read from the inputs the
first :data:`SAMPLE_ROWS` judged rows logged (:func:`default_splits`):

1. inputs with 2 to :data:`MAX_LEVELS` distinct values, split by value: text and boolean
   columns first, then numeric ones (``senior_citizen`` 0/1), each group in name order;
2. if fewer than :data:`DEFAULT_COLUMNS` were found, numeric inputs with more values fill
   the remaining places (name order), split at their quartiles (``bins``: the exact
   25/50/75 % values of those rows, ``quantile_disc``, NaN left out; values ``< a``,
   ``[a, b)``, ``>= c``);
3. at most :data:`DEFAULT_COLUMNS` columns; each such column's table says ``default: true``.

``analysis.segments: []`` reports none (the opt-out). Windows compared with each other
(canary debugging's steps) take the default chosen once over their whole span
(:func:`choose_default_splits`, as ``splits``): a quartile bin is one range in all of them.
Values are what the log holds (``CAST(… AS VARCHAR)``: a float 0/1 reads ``0.0``/``1.0``).

For each column, the judged rows are split by value: per value and arm the request
count, errors, error rate and the policy's metric from labels (ROC AUC inside DuckDB, the
others from the joined rows). The :data:`MAX_VALUES` most frequent values of a column are
reported; the rest are counted under ``other_values``. Each value also carries, per
candidate arm, its ``differences`` from the primary (difference, CI, Holm-adjusted
p-value, a ``worse`` flag: :mod:`keel.deploy.segmentdiff`). The numbers are reported,
never used to decide: a verdict per segment would multiply the chances of a false alarm.

The rows are exactly the overall metric's (R-DEP-15): the same :class:`ArmWindow`, the
same :func:`keel.deploy.judging.judged_condition` (rows inside a burn-in cut or younger
than the attribution window are left out) and the same label join
(:func:`keel.deploy.armstats.join_labels` with the window: a label counts only if it came
within the attribution window). So a column's ``n`` per arm, with ``other_values``, adds
up to the arm's ``n_judged``, and its metric ``n`` to the overall metric's.

Cost (``benchmarks/bench_deploy.py``, 1M logged rows): choosing the default reads the
inputs of at most :data:`SAMPLE_ROWS` rows; the counts of every column come from one
``GROUPING SETS`` scan; the metric shares the arms' label join
(:func:`read_with_segments`, what the controller and the report call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from keel.deploy.armstats import (
    ArmWindow,
    create_view,
    join_labels,
    metric_estimate,
    read_arm_stats,
)
from keel.deploy.judging import judged_condition
from keel.deploy.segmentdiff import compare_segments
from keel.deploy.verdict import ArmStats
from keel.serving._segments import FEATURE_PREFIX
from keel.serving.predquery import segment_files

__all__ = [
    "DEFAULT_COLUMNS",
    "MAX_LEVELS",
    "MAX_VALUES",
    "SAMPLE_ROWS",
    "Split",
    "choose_default_splits",
    "default_splits",
    "read_segment_stats",
    "read_with_segments",
]

#: Values reported per segment column (the most frequent).
MAX_VALUES = 20
#: Columns of the default segments (``analysis.segments`` not given).
DEFAULT_COLUMNS = 5
#: A default column split by value has at most this many distinct values.
MAX_LEVELS = 12
#: The default columns and quartiles are chosen from this many judged rows (the first).
SAMPLE_ROWS = 100_000
_QUARTILES = (0.25, 0.5, 0.75)
_TEXT_TYPES = ("VARCHAR", "BOOLEAN")
_NUMERIC_TYPES = (
    "DOUBLE", "FLOAT", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT",
    "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT",
)  # fmt: skip
_ERRORS = """count(*) FILTER (WHERE coalesce(fallback, false)
                        OR coalesce(extra, '') LIKE '%"error"%')"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class Split:
    """One segment column: by value, or (``bins``) at these edges of a numeric column."""

    column: str
    bins: tuple[float, ...] = ()
    default: bool = False

    def labels(self) -> list[str]:
        """The bins' values: ``< a``, ``[a, b)``, …, ``>= c``."""
        edges = [f"{e:.6g}" for e in self.bins]
        if len(set(edges)) < len(edges):  # close edges: print them exactly
            edges = [repr(e) for e in self.bins]
        inner = [f"[{a}, {b})" for a, b in zip(edges, edges[1:], strict=False)]
        return [f"< {edges[0]}", *inner, f">= {edges[-1]}"]

    def expr(self, prefix: str = "") -> str:
        """SQL of the value (text) a row of view ``p`` has in this segment."""
        col = prefix + _ident(FEATURE_PREFIX + self.column)
        if not self.bins:
            return f"CAST({col} AS VARCHAR)"
        x = f"CAST({col} AS DOUBLE)"
        labels = self.labels()
        cases = " ".join(
            f"WHEN {x} < CAST('{edge!r}' AS DOUBLE) THEN {_quote(label)}"
            for edge, label in zip(self.bins, labels, strict=False)
        )
        last = _quote(labels[-1])
        return f"CASE WHEN {x} IS NULL OR isnan({x}) THEN NULL {cases} ELSE {last} END"


def default_splits(
    con: duckdb.DuckDBPyConnection, logged: dict[str, str], judged: str
) -> list[Split]:
    """The default segments (module docstring) of view ``p``'s rows matching ``judged``;
    ``logged``: its column → DuckDB type."""
    kinds: dict[str, str] = {}
    for name, kind in sorted(logged.items()):
        if name.startswith(FEATURE_PREFIX) and len(name) > len(FEATURE_PREFIX):
            if kind in _TEXT_TYPES or kind in _NUMERIC_TYPES or kind.startswith("DECIMAL"):
                kinds[name[len(FEATURE_PREFIX) :]] = kind
    if not kinds:
        return []
    names = list(kinds)
    cols = {c: _ident(FEATURE_PREFIX + c) for c in names}
    # Chosen from the first SAMPLE_ROWS judged rows (DuckDB keeps the files' row order, so
    # the same rows each time): a bounded cost however long the log.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE pick AS SELECT {', '.join(cols.values())} "
        f"FROM p{judged} LIMIT {SAMPLE_ROWS}"
    )
    sql = ", ".join(f"count(DISTINCT {cols[c]})" for c in names)
    distinct = dict(
        zip(names, con.execute(f"SELECT {sql} FROM pick").fetchone() or (), strict=True)
    )
    levels = [c for c in names if 2 <= int(distinct[c] or 0) <= MAX_LEVELS]
    levels.sort(key=lambda c: kinds[c] not in _TEXT_TYPES)  # stable: name order within
    chosen = [Split(c, default=True) for c in levels[:DEFAULT_COLUMNS]]
    room = DEFAULT_COLUMNS - len(chosen)
    binned = [
        c for c in names if kinds[c] not in _TEXT_TYPES and int(distinct[c] or 0) > MAX_LEVELS
    ]
    if binned[:room]:
        qs = ", ".join(str(q) for q in _QUARTILES)
        # NaN is no quantile: the bins hold the numbers, NaN rows read as a null value
        sql = ", ".join(
            f"quantile_disc({cols[c]}, [{qs}]) FILTER (WHERE NOT isnan(CAST({cols[c]} AS DOUBLE)))"
            for c in binned[:room]
        )
        found = con.execute(f"SELECT {sql} FROM pick").fetchone() or ()
        for column, edges in zip(binned[:room], found, strict=True):
            if edges and None not in edges:
                chosen.append(Split(column, tuple(sorted({float(e) for e in edges})), True))
    con.execute("DROP TABLE pick")
    return chosen


def choose_default_splits(root: Path, model: str, deployment: str, span: ArmWindow) -> list[Split]:
    """The default segments of ``span``'s judged rows, as :func:`read_segment_stats` ``splits``."""
    files = _files(root, model, span)
    if not files:
        return []
    with duckdb.connect() as con:
        create_view(con, files, deployment, span.start_ms, span.end_ms)
        return default_splits(con, *_view(con, span))


def read_segment_stats(
    root: Path,
    labels: Callable[[], pd.DataFrame] | None,
    model: str,
    deployment: str,
    arms: Sequence[str],
    window: ArmWindow,
    segments: Sequence[str] | None,
    metric: str | None,
    *,
    primary: str | None = None,
    alpha: float = 0.05,
    splits: Sequence[Split] | None = None,
) -> dict[str, Any]:
    """Column → ``{"values": [{"value", "arms": {arm: {n, errors, error_rate, metric}},
    "differences": {candidate: {metric, error_rate, worse}}}], "other_values": n}`` over
    the rows of ``[window.start_ms, window.end_ms)`` that the metric judges (outside
    ``window.burn_in``, older than its attribution window).

    ``segments``: the columns; None for the default (module docstring: those tables also
    say ``default: true`` and a binned one its ``bins``), ``[]`` for none. A named column
    the log lacks gets ``{"values": [], "error": …}``; every named column is present.
    ``primary`` (default the first arm) is what the other arms are compared with.
    ``splits``, when given, are read instead of ``segments`` (:func:`choose_default_splits`);
    each has a table, empty where the window's log lacks its column."""
    out: dict[str, Any] = {c: {"values": [], "other_values": 0} for c in segments or ()}
    if splits is not None:
        out = {s.column: _described(s, {"values": [], "other_values": 0}) for s in splits}
    files = _files(root, model, window)
    if (segments is not None and not segments) or not files or (splits is not None and not out):
        return out
    with duckdb.connect() as con:
        create_view(con, files, deployment, window.start_ms, window.end_ms)
        splits = _split_counts(con, segments, arms, window, out, given=splits)
        if metric is not None and splits:
            # The overall metric's label join, window and all: the same judged rows and labels.
            extra = [sql for sql, _ in _extra(splits)]
            columns = [c for _, c in _extra(splits)]
            if join_labels(
                con,
                labels,
                {},
                with_output=metric != "roc_auc",
                extra=extra,
                columns=columns,
                window=window,
            ):
                _add_metric(con, splits, metric, out)
    compare_segments(out, arms, primary or arms[0], alpha)
    return out


def read_with_segments(
    root: Path,
    labels: Callable[[], pd.DataFrame] | None,
    model: str,
    deployment: str,
    window: ArmWindow,
    segments: Sequence[str] | None,
    *,
    arms: Sequence[str],
    segment_arms: Sequence[str],
    primary: str,
    metrics: Sequence[str] = (),
    alpha: float = 0.05,
    **options: Any,
) -> tuple[dict[str, ArmStats], dict[str, Any]]:
    """:func:`keel.deploy.armstats.read_arm_stats` of ``arms`` (``options``: its keywords)
    and :func:`read_segment_stats` of ``segment_arms`` with the first metric, over one view
    and one label join: the segments' metric reads the overall metric's labelled rows."""
    out: dict[str, Any] = {c: {"values": [], "other_values": 0} for c in segments or ()}
    files = _files(root, model, window)
    if (segments is not None and not segments) or not files:
        found = read_arm_stats(
            root, labels, model, deployment, arms, window, primary=primary, metrics=metrics,
            **options,
        )  # fmt: skip
        return found, out
    with duckdb.connect() as con:
        create_view(con, files, deployment, window.start_ms, window.end_ms)
        splits = _split_counts(con, segments, segment_arms, window, out)
        found = read_arm_stats(
            root, labels, model, deployment, arms, window, primary=primary, metrics=metrics,
            con=con, extra=_extra(splits), **options,
        )  # fmt: skip
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if metrics and splits and "lab" in tables:
            _add_metric(con, splits, metrics[0], out)
    compare_segments(out, segment_arms, primary, alpha)
    return found, out


def _files(root: Path, model: str, window: ArmWindow) -> list[Path]:
    start, end = (pd.Timestamp(ms, unit="ms", tz="UTC") for ms in (window.start_ms, window.end_ms))
    return list(segment_files(root, model, None, start.to_pydatetime(), end.to_pydatetime()))


def _extra(splits: Sequence[Split]) -> list[tuple[str, str]]:
    """The labelled rows' segment columns: (``expr AS seg_i``, the log column it reads)."""
    return [
        (f"{s.expr('p.')} AS seg_{i}", _ident(FEATURE_PREFIX + s.column))
        for i, s in enumerate(splits)
    ]


def _split_counts(
    con: duckdb.DuckDBPyConnection,
    segments: Sequence[str] | None,
    arms: Sequence[str],
    window: ArmWindow,
    out: dict[str, Any],
    *,
    given: Sequence[Split] | None = None,
) -> list[Split]:
    """The splits of view ``p`` (given, named or default), their count tables put in ``out``."""
    logged, judged = _view(con, window)
    if given is not None:
        splits = [s for s in given if FEATURE_PREFIX + s.column in logged]
    elif segments is None:
        splits = default_splits(con, logged, judged)
    else:
        splits = [Split(c) for c in segments if FEATURE_PREFIX + c in logged]
        for column in segments:
            if FEATURE_PREFIX + column not in logged:
                out[column]["error"] = f"column {column!r} is not in the prediction log"
    if not splits:
        return []
    for split, counts in zip(splits, _counts(con, splits, judged), strict=True):
        out[split.column] = _described(split, _table(counts, arms))
    return splits


def _view(con: duckdb.DuckDBPyConnection, window: ArmWindow) -> tuple[dict[str, str], str]:
    """View ``p``'s columns → DuckDB type, and the ``WHERE`` of the rows the metric judges."""
    logged = {str(row[0]): str(row[1]) for row in con.execute("DESCRIBE p").fetchall()}
    condition = judged_condition(window.burn_in, window.mature_ms)
    return logged, f" WHERE {condition}" if condition else ""


def _described(split: Split, table: dict[str, Any]) -> dict[str, Any]:
    """``table`` saying whether ``split`` is a default column and its bins."""
    if split.default:
        table["default"] = True
    if split.bins:
        table["bins"] = list(split.bins)
    return table


def _counts(
    con: duckdb.DuckDBPyConnection, splits: Sequence[Split], judged: str
) -> list[list[tuple[Any, ...]]]:
    """(value, arm, n, errors) rows per split, all from one scan (GROUPING SETS)."""
    values = ", ".join(f"{s.expr()} AS s{i}" for i, s in enumerate(splits))
    flags = ", ".join(f"grouping(s{i})" for i in range(len(splits)))
    sets = ", ".join(f"(s{i}, arm)" for i in range(len(splits)))
    sql = (
        f"SELECT {values}, arm, count(*) AS n, {_ERRORS} AS errors, {flags} FROM p{judged} "
        f"GROUP BY GROUPING SETS ({sets})"
    )
    k = len(splits)
    out: list[list[tuple[Any, ...]]] = [[] for _ in splits]
    for row in con.execute(sql).fetchall():
        i = list(row[k + 3 :]).index(0)  # the one split this row groups
        out[i].append((row[i], row[k], row[k + 1], row[k + 2]))
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
    con: duckdb.DuckDBPyConnection, splits: Sequence[Split], metric: str, out: dict[str, Any]
) -> None:
    """Each split value's metric per arm from table ``lab`` (its ``seg_i`` columns)."""
    # The labelled rows only (a tenth of the log in bench_deploy.py): one frame and a sort
    # per group in numpy beat one DuckDB window query per column (0.05 s each there).
    frame = con.execute("SELECT * FROM lab").df()
    for i, split in enumerate(splits):
        found = {}
        for (a, v), rows in frame.groupby(["arm", f"seg_{i}"], dropna=False, sort=False):
            estimate = metric_estimate(metric, rows)
            if estimate is not None:
                found[(str(None if pd.isna(v) else v), str(a))] = estimate
        for entry in out[split.column]["values"]:
            for arm, numbers in entry["arms"].items():
                estimate = found.get((str(entry["value"]), arm))
                if estimate is not None:
                    numbers["metric"] = {
                        "name": metric,
                        "value": estimate.value,
                        "std_error": estimate.std_error,
                        "n": estimate.n,
                    }
