"""When a met trigger may fire (R-TRN-21: no retraining or rollout at peak traffic).

A trigger's ``timing`` section defers a fire, never drops it:

* ``allowed_hours`` / ``allowed_days``: a cron hour field (``22-06`` wraps past midnight,
  both ends included) and day-of-week names or numbers (``[sat, sun]``), read by keel's one
  cron grammar (:mod:`keel.automation.cron`), in UTC;
* ``avoid_peak``: the model's predictions per hour of week over the last ``weeks`` weeks
  from the prediction log; when the current hour of week's mean is above the
  ``percentile``-th percentile of the 168 hours' means, it is a peak hour.

A deferred evaluation is recorded with these numbers and the next allowed time; the next
evaluation fires the pending fire once the time is allowed, even if the conditions that met
have since cleared (:mod:`keel.automation.triggers.service` carries it forward).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, field_validator

from keel._models import Entity
from keel.automation.cron import next_fire, validate_cron
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.automation.triggers.context import EvaluationContext
    from keel.automation.triggers.models import Trigger

__all__ = [
    "HOURS_PER_WEEK",
    "PeakGuard",
    "Timing",
    "TimingCheck",
    "check_timing",
    "hourly_traffic",
    "pending_fire",
]

HOURS_PER_WEEK = 168
_HOUR_MS = 3_600_000


class PeakGuard(Entity):
    """``avoid_peak``: defer in hours of week whose traffic is above a percentile."""

    percentile: float = Field(default=80.0, gt=0, lt=100)
    weeks: int = Field(default=4, ge=1, le=52)
    #: Fewer predictions than this over the weeks: too little traffic to call a peak.
    min_predictions: int = Field(default=168, ge=1, le=1_000_000_000)


class Timing(Entity):
    """The trigger's ``timing`` section (all optional; none given: fire at any time)."""

    allowed_hours: str | None = Field(default=None, max_length=100)
    allowed_days: list[str] | None = Field(default=None, min_length=1, max_length=7)
    avoid_peak: PeakGuard | bool | None = None

    @field_validator("allowed_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_cron(f"* {value.strip()} * * *")
            except InvalidInput:
                raise ValueError(
                    f"{value!r} is not a cron hour field (e.g. '22-06', '0-5,22-23', '3')"
                ) from None
        return value

    @field_validator("allowed_days")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        for day in value or []:
            try:
                validate_cron(f"* * * * {str(day).strip()}")
            except InvalidInput:
                raise ValueError(
                    f"unknown day {day!r} (mon, tue, wed, thu, fri, sat, sun or 0-6)"
                ) from None
        return value

    @property
    def peak(self) -> PeakGuard | None:
        """The peak guard, or None when off (``avoid_peak: true`` takes the defaults)."""
        if self.avoid_peak is True:
            return PeakGuard()
        return self.avoid_peak or None

    @property
    def cron(self) -> str | None:
        """The allowed window as one cron expression (None: any hour of any day)."""
        if self.allowed_hours is None and self.allowed_days is None:
            return None
        hours = (self.allowed_hours or "*").strip()
        days = ",".join(str(d).strip().lower() for d in self.allowed_days or []) or "*"
        return validate_cron(f"* {hours} * * {days}")


@dataclass
class TimingCheck:
    """Whether the trigger may fire now, with the numbers behind it."""

    allowed: bool
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    retry_at_ms: int | None = None


def check_timing(ctx: EvaluationContext) -> TimingCheck:
    """The trigger's timing at ``ctx.now_ms``: the explicit window first, then the peak."""
    timing: Timing | None = ctx.trigger.timing
    if timing is None:
        return TimingCheck(True)
    now = dt.datetime.fromtimestamp(ctx.now_ms / 1000, dt.UTC)
    numbers: dict[str, Any] = {}
    reasons: list[str] = []
    retry: int | None = None
    expression = timing.cron
    if expression is not None:
        from croniter import croniter

        inside = bool(croniter.match(expression, now))
        numbers["window"] = {"cron": expression, "inside": inside}
        if not inside:
            retry = int(next_fire(expression, now).timestamp() * 1000)
            numbers["window"]["next_allowed_ms"] = retry
            reasons.append(f"outside the allowed hours/days ({expression})")
    guard = timing.peak
    if guard is not None:
        peak = _peak(ctx, guard, now)
        numbers["peak"] = peak
        if peak["peak"]:
            reasons.append(
                f"peak traffic: {peak['current_mean']:.1f} predictions/h in this hour of week "
                f"> p{guard.percentile:g} {peak['threshold']:.1f} over {guard.weeks} weeks"
            )
            retry = max(retry or 0, peak["next_quiet_ms"] or 0) or retry
    if not reasons:
        return TimingCheck(True, numbers=numbers)
    return TimingCheck(False, "; ".join(reasons), numbers, retry)


def _peak(ctx: EvaluationContext, guard: PeakGuard, now: dt.datetime) -> dict[str, Any]:
    """The peak verdict and its numbers for the hour of week holding ``now``."""
    hour_start = ctx.now_ms - ctx.now_ms % _HOUR_MS
    start = hour_start - guard.weeks * 7 * 24 * _HOUR_MS
    means = hourly_traffic(ctx, start, hour_start) / guard.weeks
    total = int(round(float(means.sum()) * guard.weeks))
    slot = _slot(now)
    threshold = float(np.percentile(means, guard.percentile))
    out: dict[str, Any] = {
        "hour_of_week": slot,
        "current_mean": float(means[slot]),
        "threshold": threshold,
        "percentile": guard.percentile,
        "weeks": guard.weeks,
        "predictions": total,
        "peak": False,
        "next_quiet_ms": None,
    }
    if total < guard.min_predictions:
        out["note"] = f"{total} predictions over {guard.weeks} weeks, need {guard.min_predictions}"
        return out
    out["peak"] = bool(means[slot] > threshold)
    if out["peak"]:  # the next hour of week at or under the threshold
        for ahead in range(1, HOURS_PER_WEEK + 1):
            if means[(slot + ahead) % HOURS_PER_WEEK] <= threshold:
                out["next_quiet_ms"] = hour_start + ahead * _HOUR_MS
                break
    return out


def _slot(moment: dt.datetime) -> int:
    """Hour of week in UTC: Monday 00:00 is 0, Sunday 23:00 is 167."""
    return moment.weekday() * 24 + moment.hour


def hourly_traffic(ctx: EvaluationContext, start_ms: int, end_ms: int) -> np.ndarray:
    """Predictions of the trigger's model (every version) logged in ``[start_ms, end_ms)``,
    summed per hour of week (168 counts, Monday 00:00 UTC first), in one DuckDB query."""
    import duckdb
    import pyarrow as pa

    from keel.serving.predquery import query_log

    def run(con: duckdb.DuckDBPyConnection, source: str, params: dict[str, Any]) -> pa.Table:
        con.execute("SET TimeZone = 'UTC'")  # hours of week in UTC, whatever the host's zone
        # isodow: Monday 1 … Sunday 7
        sql = (
            "SELECT (isodow(ts) - 1) * 24 + hour(ts) AS slot, count(*) AS n "
            f"FROM {source} GROUP BY slot"
        )
        found: pa.Table = con.sql(sql, params=params).to_arrow_table()
        return found

    counts = np.zeros(HOURS_PER_WEEK)
    root = ctx.services.monitors.inputs.predictions_root
    table = query_log(run, ctx.trigger.model, None, start_ms, end_ms, root=root, columns=["ts"])
    if table is not None and table.num_rows:
        slots = table.column("slot").to_numpy()
        counts[slots.astype(int)] = table.column("n").to_numpy()
    return counts


def pending_fire(services: Any, trigger: Trigger) -> dict[str, Any] | None:
    """The fire the trigger's previous evaluation owed (deferred by timing, or blocked while
    owed), read from its decision record: ``{since_ms, event}``; None when it fired or owed
    nothing. Kept in the decision log, so a restart loses no deferred fire."""
    if trigger.last_evaluated_at_ms is None:
        return None
    records = services.decisions.query(
        model=trigger.model,
        kind="trigger_evaluation",
        since=trigger.last_evaluated_at_ms,
        limit=1_000,
    )
    mine = [r for r in records if r.related.get("trigger") == trigger.name]
    if not mine:
        return None
    owed = max(mine, key=lambda r: (r.at_ms, r.id)).details.get("pending_fire")
    return owed if isinstance(owed, dict) else None
