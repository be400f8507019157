"""Per-arm numbers of a deployment from the durable prediction log and feedback labels.

The controller's only input: what every replica logged (``deployment`` and ``arm``
columns), never one process's counters. One DuckDB pass over the rows of the rollout
gives, per arm, the request count, errors and p99 latency of the guardrail window and the
count since the current step; labels (joined by ``request_id``, the newest label per
request) give the policy's metric with its standard error.

Error rows: a row the gateway logged with ``fallback`` true or an ``error`` key in
``extra`` (the arm failed and something else answered).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from keel.deploy.abstats import auc_std_error
from keel.deploy.judging import (
    attributed_labels,
    judged_condition,
    labelled_rows,
    late_labels_sql,
    scoped_counts,
)
from keel.deploy.livecuped import adjust
from keel.deploy.rowmetrics import mean_estimate, metric_values, numbers, score_of
from keel.deploy.verdict import ArmStats, MetricEstimate
from keel.serving._segments import FEATURE_PREFIX
from keel.serving.predquery import segment_files

__all__ = [
    "METRICS",
    "ArmWindow",
    "auc_estimates",
    "create_view",
    "join_labels",
    "metric_estimate",
    "read_arm_stats",
    "roc_auc",
]

#: Metrics the controller can compute per arm from labels (policy ``guardrails.metric.name``).
METRICS = frozenset({"roc_auc", "accuracy", "log_loss", "brier", "mae", "mse", "label_mean"})

_COUNTS_SQL = """
SELECT arm,
       count(*) FILTER (WHERE ts >= $guard) AS n,
       count(*) FILTER (WHERE ts >= $guard AND (coalesce(fallback, false)
                        OR coalesce(extra, '') LIKE '%"error"%')) AS errors,
       quantile_cont(latency_ms, 0.99) FILTER (WHERE ts >= $guard) AS p99,
       count(*) FILTER (WHERE ts >= $step) AS n_in_step{scoped}
FROM p GROUP BY arm
"""
_LABELLED_SQL = """
CREATE OR REPLACE TEMP TABLE lab AS
WITH fb AS (
    SELECT request_id, arg_max(label_value, received_ts) AS y{label_text}
    FROM {source} WHERE request_id IS NOT NULL GROUP BY request_id
)
SELECT p.arm, {score} AS score, fb.y{extra}
FROM {rows} p JOIN fb USING (request_id){judged}
"""
# ROC AUC by the rank-sum (Mann-Whitney) formula, ties at their average rank: per group
# and distinct score, n rows of which pos positive sit after `before` lower scores, so the
# positives' ranks sum to pos * (before + (n + 1) / 2); kept doubled to stay integral.
_AUC_SQL = """
WITH g AS (
    SELECT {groups}, score, count(*) AS n, count(*) FILTER (WHERE y = 1) AS pos
    FROM lab WHERE score IS NOT NULL AND NOT isnan(score) AND y IS NOT NULL AND NOT isnan(y)
    GROUP BY {groups}, score
), c AS (
    SELECT {groups}, n, pos, coalesce(sum(n) OVER (PARTITION BY {groups} ORDER BY score
        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
    FROM g
)
SELECT {groups}, CAST(sum(pos * (2 * before + n + 1)) AS HUGEINT) AS twice_rank_sum,
       CAST(sum(pos) AS BIGINT) AS positives, CAST(sum(n) - sum(pos) AS BIGINT) AS negatives
FROM c GROUP BY {groups}
"""
_AGREEMENT_SQL = """
WITH prim AS (SELECT request_id, any_value(CAST(output AS VARCHAR)) AS o FROM p
              WHERE arm = $primary AND ts >= $step
              GROUP BY request_id)
SELECT s.arm, avg(CASE WHEN CAST(s.output AS VARCHAR) = prim.o THEN 1.0 ELSE 0.0 END)
FROM p s JOIN prim USING (request_id)
WHERE s.arm <> $primary AND s.ts >= $step
GROUP BY s.arm
"""


@dataclass(frozen=True, slots=True)
class ArmWindow:
    """The time windows of one evaluation, epoch milliseconds (end exclusive)."""

    start_ms: int  # rollout start: the metric is cumulative from here
    step_ms: int  # current step (phase) start: n_in_step, agreement
    guard_ms: int  # guardrail window start (error rate, p99)
    end_ms: int
    #: R-DEP-15: [from, to) spans whose rows the metric leaves out (novelty burn-in).
    burn_in: tuple[tuple[int, int], ...] = ()
    #: R-DEP-15: seconds a label may take to arrive; younger predictions are pending.
    attribution_s: int = 0

    @property
    def mature_ms(self) -> int | None:
        """Predictions at or after this time are not judged yet (no attribution window: None)."""
        return self.end_ms - 1 - self.attribution_s * 1000 if self.attribution_s else None


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _list(files: Sequence[Path]) -> str:
    # A view cannot take parameters: the file list and filters are inlined as literals.
    return "[" + ", ".join(_quote(str(f)) for f in files) + "]"


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    # DuckDB refuses parameters a statement does not name.
    return {k: v for k, v in params.items() if f"${k}" in sql}


def _ts(ms: int) -> Any:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def read_arm_stats(
    root: Path,
    labels: Callable[[], pd.DataFrame] | None,
    model: str,
    deployment: str,
    arms: Sequence[str],
    window: ArmWindow,
    *,
    primary: str,
    metrics: Sequence[str] = (),
    with_agreement: bool = False,
    cuped: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> dict[str, ArmStats]:
    """:class:`ArmStats` of each of ``arms`` (zeros for an arm without traffic).

    ``labels`` returns every stored label (``FeedbackStore.labels``); ``metrics`` are
    names from :data:`METRICS`, the first one becomes ``ArmStats.metric`` and the rest
    ``ArmStats.secondary``; ``with_agreement`` also compares each arm's outputs with the
    primary's for the same request (a shadow phase); ``cuped`` names a logged input whose
    CUPED adjustment the first metric gets (:mod:`keel.deploy.livecuped`).

    ``con``: a connection holding this window's view ``p`` (:func:`create_view`), left
    with the labelled rows' table ``lab``, ``extra`` (``(sql over p, log column)`` pairs)
    among its columns: the per-segment metric then reads the very rows and labels of the
    overall one without a second label join (:mod:`keel.deploy.segments`).
    """
    start, end = _ts(window.start_ms), _ts(window.end_ms)
    files = segment_files(root, model, None, start.to_pydatetime(), end.to_pydatetime())
    found = {name: ArmStats(name, 0) for name in arms}
    if not files:
        return found
    params = {
        "deployment": deployment,
        "guard": _ts(window.guard_ms),
        "step": _ts(window.step_ms),
        "end": end,
    }
    # One view over the files predquery selects (partition pruning, torn files left out);
    # DuckDB pushes the deployment/time filter and the column choice into the Parquet scan,
    # so a tick reads only this deployment's few columns (the whole-table read of
    # predquery.predictions, sorted by time, cost 7x more over 1M rows: bench_deploy.py).
    with duckdb.connect() if con is None else nullcontext(con) as db:
        if con is None:
            create_view(db, files, deployment, window.start_ms, window.end_ms)
        sql = _COUNTS_SQL.format(scoped=scoped_counts(window.burn_in, window.mature_ms))
        counts = {
            row[0]: row[1:] for row in db.execute(sql, _used(sql, params)).fetchall() if row[0]
        }
        agreement: dict[str, float] = {}
        if with_agreement:
            sql, values = _AGREEMENT_SQL, {**params, "primary": primary}
            agreement = dict(db.execute(sql, _used(sql, values)).fetchall())
        per_arm, late, adjusted = (
            _metrics(db, labels, params, metrics, window, cuped, extra) if metrics else ({}, {}, {})
        )
    for name in arms:
        n, errors, p99, n_in_step, burned, pending, judged = counts.get(
            name, (0, 0, None, 0, 0, 0, 0)
        )
        estimates = per_arm.get(name, {})
        main = estimates.get(metrics[0]) if metrics else None
        found[name] = ArmStats(
            name=name,
            n=int(n),
            errors=int(errors),
            p99_latency_ms=None if p99 is None else float(p99),
            n_in_step=int(n_in_step),
            metric=main,
            secondary={m: e for m, e in estimates.items() if m != metrics[0]},
            agreement=None if name == primary or name not in agreement else float(agreement[name]),
            burn_in_excluded=int(burned),
            pending=int(pending),
            n_judged=int(judged),
            late_labels=int(late.get(name, 0)),
            cuped=adjusted,
        )
    return found


def create_view(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    deployment: str,
    start_ms: int,
    end_ms: int,
    *,
    positions: bool = False,
) -> None:
    """View ``p``: the deployment's logged rows in ``[start_ms, end_ms)`` of ``files``;
    ``positions`` adds each row's ``filename`` and ``file_row_number`` (logged order)."""
    start, end = _ts(start_ms), _ts(end_ms)
    where = ", filename = true, file_row_number = true" if positions else ""
    con.execute(
        f"CREATE VIEW p AS SELECT * FROM read_parquet({_list(files)}, "
        f"hive_partitioning = true, union_by_name = true{where}) "
        f"WHERE deployment = {_quote(deployment)} "
        f"AND ts >= TIMESTAMPTZ '{start.isoformat()}' AND ts < TIMESTAMPTZ '{end.isoformat()}'"
    )


def join_labels(
    con: duckdb.DuckDBPyConnection,
    labels: Callable[[], pd.DataFrame] | None,
    params: dict[str, Any],
    *,
    with_output: bool,
    extra: Sequence[str] = (),
    columns: Sequence[str] = (),
    window: ArmWindow | None = None,
) -> bool:
    """Temp table ``lab`` (arm, score, y, t[, output][, extra columns]) of view ``p``'s rows
    that have a label; False when there are no labels at all. With ``window``, only rows
    outside its burn-in cuts and older than its attribution window, each with a label that
    arrived within that window (``columns``: the log columns ``extra`` reads)."""
    stored = labels() if labels is not None else pd.DataFrame()
    if stored.empty or "request_id" not in stored.columns:
        return False
    con.register("labels", stored[["request_id", "label", "label_value", "received_ts"]])
    # The output and the label's text serve accuracy/mae/mse only: reading them for
    # roc_auc alone costs a fifth more (bench_deploy.py).
    selected = (", CAST(p.output AS VARCHAR) AS output, fb.t" if with_output else "") + "".join(
        f", {c}" for c in extra
    )
    text = ", arg_max(label, received_ts) AS t" if with_output else ""
    condition = "" if window is None else judged_condition(window.burn_in, window.mature_ms, "p.ts")
    judged = f" WHERE {condition}" if condition else ""
    attribution = 0 if window is None else window.attribution_s
    source, rows = "labels", "p"
    if attribution:
        con.execute(labelled_rows(columns))
        source, rows = attributed_labels(attribution), "pl"
    # The positive-class probability of a binary classifier is the last one listed; a model
    # that logged no probabilities is scored by its output when that is a number.
    for score in (
        "p.probabilities[len(p.probabilities)]",
        "TRY_CAST(CAST(p.output AS VARCHAR) AS DOUBLE)",
    ):
        sql = _LABELLED_SQL.format(
            score=score, extra=selected, label_text=text, source=source, judged=judged, rows=rows
        )
        con.execute(sql, _used(sql, params))
        if con.execute("SELECT count(score) FROM lab").fetchone() != (0,):
            break
    return True


def auc_estimates(
    con: duckdb.DuckDBPyConnection, groups: Sequence[str] = ("arm",)
) -> dict[tuple[Any, ...], MetricEstimate]:
    """ROC AUC with its Hanley-McNeil standard error per ``groups`` key of table ``lab``
    (label 1 positive, any other label negative); groups without both classes left out."""
    sql = _AUC_SQL.format(groups=", ".join(groups))
    out: dict[tuple[Any, ...], MetricEstimate] = {}
    for *key, twice_rank_sum, positives, negatives in con.execute(sql).fetchall():
        if positives < 1 or negatives < 1:
            continue
        # Integer arithmetic up to the one division: exact for any realistic count.
        u = int(twice_rank_sum) - positives * (positives + 1)
        auc = u / (2 * positives * negatives)
        std = auc_std_error(auc, positives, negatives)
        out[tuple(key)] = MetricEstimate(auc, std, positives + negatives)
    return out


def _metrics(
    con: duckdb.DuckDBPyConnection,
    labels: Callable[[], pd.DataFrame] | None,
    params: dict[str, Any],
    metrics: Sequence[str],
    window: ArmWindow,
    covariate: str | None,
    extra: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, dict[str, MetricEstimate]], dict[str, int], dict[str, Any]]:
    """Per-arm metric estimates, per-arm judged requests whose labels came too late, and
    the CUPED summary (empty without a covariate)."""
    others = [m for m in metrics if m != "roc_auc"]
    column = FEATURE_PREFIX + (covariate or "")
    logged = {row[0] for row in con.execute("DESCRIBE p").fetchall()} if covariate else set()
    cov = [f'TRY_CAST(p."{column}" AS DOUBLE) AS cov'] if column in logged else []
    summary: dict[str, Any] = {}
    if covariate and not cov:
        summary = {"covariate": covariate, "applied": False, "reason": "not in the log"}
    elif covariate and metrics[0] not in others:
        summary, cov = {"covariate": covariate, "applied": False, "reason": "roc_auc"}, []
    selected = [column] if cov else []
    more = [*cov, *(sql for sql, _ in extra)]  # the caller's columns (segments) ride along
    selected += [c for _, c in extra if c.strip('"') not in selected]
    if not join_labels(
        con, labels, params, with_output=bool(others), extra=more, columns=selected, window=window
    ):
        return {}, {}, summary
    late: dict[str, int] = {}
    if window.attribution_s:
        condition = judged_condition(window.burn_in, window.mature_ms, "p.ts")
        sql = late_labels_sql(window.attribution_s, condition)
        late = {str(arm): int(count) for arm, count in con.execute(sql).fetchall()}
    out: dict[str, dict[str, MetricEstimate]] = {}
    if "roc_auc" in metrics:
        # In DuckDB: one grouped pass, no per-arm frame (1M rows / 100k labels, bench_deploy).
        for (arm,), estimate in auc_estimates(con).items():
            out.setdefault(str(arm), {})["roc_auc"] = estimate
    if others:
        frame = con.execute(
            f"SELECT arm, output, score, y, t{', cov' if cov else ''} FROM lab"
        ).df()
        for arm, rows in frame.groupby("arm"):
            for name in others:
                found = metric_estimate(name, rows)
                if found is not None:
                    out.setdefault(str(arm), {})[name] = found
        if cov and covariate:
            adjusted, summary = adjust(frame, metrics[0], covariate)
            for arm, estimate in adjusted.items():
                out[arm][metrics[0]] = estimate
    return out, late, summary


def metric_estimate(name: str, rows: pd.DataFrame) -> MetricEstimate | None:
    """One arm's ``name`` metric with its standard error from labelled rows (columns as
    :func:`metric_values`); None when undefined."""
    values = metric_values(name, rows)
    if values is not None:
        return mean_estimate(values)
    score, y = score_of(rows), numbers(rows["y"])
    keep = ~(np.isnan(score) | np.isnan(y))
    score, y = np.clip(score[keep], 1e-15, 1 - 1e-15), y[keep]
    positives, negatives = int((y == 1).sum()), int((y != 1).sum())
    if positives < 1 or negatives < 1:
        return None
    auc = roc_auc(score, y == 1)
    return MetricEstimate(auc, auc_std_error(auc, positives, negatives), int(y.size))


def roc_auc(score: np.ndarray[Any, Any], positive: np.ndarray[Any, Any]) -> float:
    """ROC AUC by the rank-sum formula, ties at their average rank (the numpy twin of
    :data:`_AUC_SQL`, for frames already in memory); needs both classes."""
    # A positive scoring v has average rank (lo + hi + 1) / 2 among all scores, lo of them
    # below v and hi at or below it. Two plain sorts and a search: about half the time of
    # ranking every row (an argsort) over a million scores.
    ordered = np.sort(score)
    hits = np.sort(score[positive])
    lo = int(np.searchsorted(ordered, hits, "left").sum())
    hi = int(np.searchsorted(ordered, hits, "right").sum())
    n_pos = hits.size
    n_neg = score.size - n_pos
    # Doubled rank sum minus n_pos (n_pos + 1): integers up to the one division.
    return float((lo + hi + n_pos - n_pos * (n_pos + 1)) / (2 * n_pos * n_neg))
