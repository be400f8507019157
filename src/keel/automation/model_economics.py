"""One model's retraining economics from its own history (``keel models economics NAME``).

λ and A0 are fitted (:func:`keel.automation.decay.fit_decay`) to the served version's
performance per day since it was trained, measured from the prediction log joined with
feedback labels; the query volume Q is measured from the log unless given. The interval
maths is :mod:`keel.automation.economics`' (one implementation): T* exact and by the
square-root law, half-life, S(T), sensitivity, automate flag, assumptions. Beside it: the
model's configured retraining schedules (its triggers' ``schedule`` conditions) and what
each costs per day compared with T*.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel._durations import parse_duration_s
from keel._models import now_ms as wall_ms
from keel.automation.decay import DecayFit, fit_decay
from keel.automation.economics import EconomicsInputs, IntervalReport, daily_cost, interval_report
from keel.errors import InvalidInput

__all__ = ["METRICS", "HistoryPoint", "ModelEconomics", "Schedule", "model_economics"]

#: Metrics that decay towards 0 as a model goes stale (a fraction in (0, 1]).
METRICS = ("accuracy", "roc_auc", "precision", "recall", "f1")
_DAY_MS = 86_400_000
_MAX_WINDOW_MS = 3650 * _DAY_MS


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """The metric over one bucket of labelled predictions."""

    day: float  # the bucket's middle, days since the version was trained
    start_ms: int
    value: float
    rows: int


@dataclass(frozen=True, slots=True)
class Schedule:
    """A configured retraining schedule: a trigger's ``schedule`` condition."""

    trigger: str
    cron: str
    enabled: bool
    interval_days: float  # the mean gap between its next firings
    daily_cost: float | None  # (C + S(T))/T at that interval; None without a decay
    vs_t_star: str | None  # how it compares with T*


@dataclass(frozen=True, slots=True)
class ModelEconomics:
    """The fitted history, the inputs and :class:`IntervalReport` of one model."""

    model: str
    version: int
    metric: str
    trained_at_ms: int
    history: list[HistoryPoint]
    fit: DecayFit
    queries_per_day: float
    queries_measured: bool
    report: IntervalReport | None  # None when the performance did not decay (λ ≤ 0)
    schedules: list[Schedule]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (REST, ``--json``); T* etc. also at the top level."""
        data = asdict(self)
        report = self.report
        data["t_star_days"] = None if report is None else report.t_star_days
        data["half_life_days"] = self.fit.half_life_days
        data["automate"] = None if report is None else report.automate
        return data


def model_economics(
    services: Any,
    model: str,
    *,
    retrain_cost: float,
    value_per_point: float,
    queries_per_day: float | None = None,
    manual_deploy_days: float | None = None,
    metric: str = "accuracy",
    window: str | int = "90d",
    bucket: str | int = "1d",
    min_rows: int = 30,
    change_pct: float = 20.0,
    now_ms: int | None = None,
) -> ModelEconomics:
    """Fit λ from ``model``'s served version and report T* beside its schedules.

    NotFound for an unknown model; InvalidInput naming the field for a bad number, and
    naming ``history`` with what is missing when fewer than three buckets of ``bucket``
    have ``min_rows`` labelled predictions within ``window``.
    """
    if metric not in METRICS:
        raise InvalidInput(f"metric: expected one of {', '.join(METRICS)}", field="metric")
    if not isinstance(min_rows, int) or min_rows < 1:
        raise InvalidInput("min_rows must be an integer ≥ 1", field="min_rows")
    window_ms = parse_duration_s(window, field="window", positive=True) * 1000
    bucket_ms = parse_duration_s(bucket, field="bucket", positive=True) * 1000
    if window_ms > _MAX_WINDOW_MS:  # beyond it the window would start before any log
        raise InvalidInput("window: at most 3650d", field="window")
    # EconomicsInputs checks C, V and a given Q (the placeholders for A0 and λ are valid)
    # now, before reading any history.
    q_given = 1.0 if queries_per_day is None else queries_per_day
    EconomicsInputs(retrain_cost, q_given, value_per_point, 1.0, 1.0)
    now = wall_ms() if now_ms is None else now_ms
    version = _served_version(services, model)
    frame = _labelled(services, model, version.version, now - window_ms, now)
    trained_at = int(version.created_at_ms)
    if len(frame) and int(frame["ts_ms"].min()) < trained_at:
        trained_at = int(frame["ts_ms"].min())  # a backfilled or replayed log starts earlier
    history = _history(frame, metric, trained_at, bucket_ms, min_rows)
    if len(history) < 3:
        raise InvalidInput(
            f"history: {model} v{version.version} has {len(history)} bucket(s) of "
            f"{bucket_ms / _DAY_MS:g} d with ≥ {min_rows} labelled predictions in the last "
            f"{window_ms / _DAY_MS:g} d ({len(frame)} labelled predictions in all); fitting λ "
            f"needs 3: send labels (feedback), widen the window or lower min_rows",
            field="history",
            buckets=len(history),
            labelled=len(frame),
        )
    fit = fit_decay([p.day for p in history], [p.value for p in history])
    measured = queries_per_day is None
    q = _queries_per_day(services, model, now - window_ms, now) if measured else queries_per_day
    notes = [
        f"{metric} of v{version.version} per {bucket_ms / _DAY_MS:g} d bucket since it was "
        f"trained; buckets with fewer than {min_rows} labelled predictions are left out.",
        "Q is measured from the prediction log over the window (every version)."
        if measured
        else "Q is given.",
    ]
    report = None
    if fit.decay_per_day > 0 and q:
        inputs = EconomicsInputs(
            retrain_cost, q, value_per_point, min(fit.a0, 1.0), fit.decay_per_day
        )
        report = interval_report(
            inputs, manual_deploy_days=manual_deploy_days, change_pct=change_pct
        )
    elif not q:
        notes.append("No predictions were logged in the window: Q is 0, nothing to optimise.")
    else:
        notes.append(
            f"λ = {fit.decay_per_day:.4g} ≤ 0: {metric} did not fall over this history, so "
            "there is no optimal interval; retrain on triggers, not on a schedule."
        )
    schedules = _schedules(services, model, now, report)
    return ModelEconomics(
        model=model,
        version=version.version,
        metric=metric,
        trained_at_ms=trained_at,
        history=history,
        fit=fit,
        queries_per_day=float(q or 0.0),
        queries_measured=measured,
        report=report,
        schedules=schedules,
        notes=tuple(notes),
    )


def _served_version(services: Any, model: str) -> Any:
    registered = services.registry.get_model(model)  # NotFound: an unknown model
    number = registered.aliases.get("champion")
    if number is not None:
        return services.registry.get_version(model, number)
    versions = services.registry.list_versions(model)
    if not versions:
        raise InvalidInput(f"history: {model} has no version", field="history")
    return max(versions, key=lambda v: v.version)


def _labelled(services: Any, model: str, version: int, start: int, end: int) -> pd.DataFrame:
    from keel.automation.triggers.context import last_scores
    from keel.monitoring.performance_checks import output_values

    table = services.feedback.labelled_table(
        model, version, start, end, columns=["output", "probabilities"]
    )
    if table.num_rows == 0:
        return pd.DataFrame(columns=["ts_ms", "label", "output", "score"])
    ts = _epoch_ms(table.column("ts"))
    return pd.DataFrame(
        {
            "ts_ms": ts,
            "label": table.column("label_value").to_numpy(zero_copy_only=False),
            "output": pd.to_numeric(
                output_values(table.column("output").to_pandas()), errors="coerce"
            ).to_numpy(),
            "score": last_scores(table.column("probabilities")),
        }
    )


def _history(
    frame: pd.DataFrame, metric: str, trained_at: int, bucket_ms: int, min_rows: int
) -> list[HistoryPoint]:
    from keel.monitoring.performance import classification_metrics

    points: list[HistoryPoint] = []
    if not len(frame):
        return points
    frame = frame[frame["label"].notna()]
    buckets = (frame["ts_ms"].to_numpy() - trained_at) // bucket_ms
    for bucket in np.unique(buckets):
        rows = frame[buckets == bucket]
        if len(rows) < min_rows:
            continue
        scores = rows["score"].to_numpy()
        usable = metric == "roc_auc" and not np.isnan(scores).any()
        values = classification_metrics(
            rows["label"].to_numpy(),
            rows["output"].to_numpy(),
            scores if usable else None,
            only=(metric,),
        )
        value = values.get(metric)
        if value is None or not math.isfinite(value) or value <= 0:
            continue  # undefined here (one class; no scores for AUC)
        middle = (int(bucket) + 0.5) * bucket_ms / _DAY_MS
        points.append(HistoryPoint(middle, trained_at + int(bucket) * bucket_ms, value, len(rows)))
    return points


def _queries_per_day(services: Any, model: str, start: int, end: int) -> float:
    from keel.serving.predquery import predictions

    table = predictions(
        model, None, start, end, columns=["ts"], root=services.feedback.predictions_root
    )
    if table.num_rows == 0:
        return 0.0
    first = int(_epoch_ms(table.column("ts")).min())
    days = max((end - first) / _DAY_MS, 1.0)  # a log younger than a day counts as one day
    return float(table.num_rows) / days


def _epoch_ms(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    return np.asarray(column.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy())


def _schedules(
    services: Any, model: str, now: int, report: IntervalReport | None
) -> list[Schedule]:
    from keel.automation.cron import next_fire

    found = []
    for trigger in services.triggers.list_triggers(model):
        for _, condition in trigger.leaves():
            if condition.kind != "schedule" or not condition.cron:
                continue
            at = datetime.fromtimestamp(now / 1000, tz=UTC)
            fires = [at := next_fire(condition.cron, at) for _ in range(13)]
            gaps = [
                (b - a).total_seconds() / 86_400 for a, b in zip(fires, fires[1:], strict=False)
            ]
            interval = sum(gaps) / len(gaps)
            cost = compare = None
            if report is not None:
                cost = daily_cost(report.inputs, interval)
                if report.t_star_days is not None and report.daily_cost_at_t_star is not None:
                    ratio = interval / report.t_star_days
                    extra = cost - report.daily_cost_at_t_star
                    compare = (
                        f"every {interval:.2f} d = {ratio:.2f}× T* ({report.t_star_days:.2f} d); "
                        f"costs {extra:,.2f} per day more than retraining at T*"
                    )
            found.append(
                Schedule(trigger.name, condition.cron, trigger.enabled, interval, cost, compare)
            )
    return found
