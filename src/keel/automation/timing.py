"""When a retraining may fire or a rollout may move (R-TRN-21: no retraining or deploy at
peak traffic), one implementation for triggers and deployments.

A ``timing`` section (a trigger's, or a deployment policy's) holds work back, never drops it:

* ``allowed_hours`` / ``allowed_days``: a cron hour field (``22-06`` wraps past midnight,
  both ends included) and day-of-week names or numbers (``[sat, sun]``), read by keel's one
  cron grammar (:mod:`keel.automation.cron`), in UTC;
* ``avoid_peak``: the model's predictions per hour of week over the last ``weeks`` weeks
  from the prediction log; when the current hour of week's mean is above the
  ``percentile``-th percentile of the 168 hours' means, it is a peak hour.

:func:`evaluate_timing` gives the verdict with these numbers and the next allowed time; the
trigger service defers a fire with it (:mod:`keel.automation.triggers.timing`), the
deployment controller holds a rollout's start, steps and promotion (:mod:`keel.deploy.timing`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from keel._models import Entity
from keel.automation.cron import next_fire, validate_cron
from keel.errors import InvalidInput

if TYPE_CHECKING:  # numpy only where traffic is read: trigger/deploy models are on client paths
    import numpy as np

__all__ = [
    "HOURS_PER_WEEK",
    "PeakGuard",
    "Timing",
    "TimingCheck",
    "evaluate_timing",
    "hourly_traffic",
]

HOURS_PER_WEEK = 168
_HOUR_MS = 3_600_000


class PeakGuard(Entity):
    """``avoid_peak``: hold back in hours of week whose traffic is above a percentile."""

    percentile: float = Field(default=80.0, gt=0, lt=100)
    weeks: int = Field(default=4, ge=1, le=52)
    #: Fewer predictions than this over the weeks: too little traffic to call a peak.
    min_predictions: int = Field(default=168, ge=1, le=1_000_000_000)


def _as_guard(value: Any) -> Any:
    """``avoid_peak: true`` is the default guard, ``false`` none; a mapping is read as is
    (one type, so an error names ``avoid_peak.percentile``, not a union member)."""
    if value is True:
        return {}
    return None if value is False else value


class Timing(Entity):
    """A ``timing`` section (all optional; none given: any time is allowed)."""

    allowed_hours: str | None = Field(default=None, max_length=100)
    allowed_days: list[str] | None = Field(default=None, min_length=1, max_length=7)
    avoid_peak: Annotated[PeakGuard | None, BeforeValidator(_as_guard)] = None

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
        """The peak guard, or None when off (``avoid_peak: true`` took the defaults)."""
        return self.avoid_peak

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
    """Whether the work may go ahead now, with the numbers behind it."""

    allowed: bool
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    retry_at_ms: int | None = None


def evaluate_timing(
    timing: Timing | None, model: str, now_ms: int, predictions_root: Path | None
) -> TimingCheck:
    """``timing`` at ``now_ms`` for ``model``: the explicit window first, then the peak
    (from the prediction log under ``predictions_root``; none: no traffic, never a peak)."""
    if timing is None:
        return TimingCheck(True)
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
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
        peak = _peak(predictions_root, model, guard, now_ms)
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


def _peak(root: Path | None, model: str, guard: PeakGuard, now_ms: int) -> dict[str, Any]:
    """The peak verdict and its numbers for the hour of week holding ``now_ms``."""
    import numpy as np

    hour_start = now_ms - now_ms % _HOUR_MS
    start = hour_start - guard.weeks * 7 * 24 * _HOUR_MS
    means = hourly_traffic(root, model, start, hour_start) / guard.weeks
    total = int(round(float(means.sum()) * guard.weeks))
    slot = _slot(dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC))
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


def hourly_traffic(root: Path | None, model: str, start_ms: int, end_ms: int) -> np.ndarray:
    """Predictions of ``model`` (every version, every deployment) logged under ``root`` in
    ``[start_ms, end_ms)``, summed per hour of week (168 counts, Monday 00:00 UTC first), in
    one DuckDB query."""
    import duckdb
    import numpy as np
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
    if root is None:
        return counts
    table = query_log(run, model, None, start_ms, end_ms, root=root, columns=["ts"])
    if table is not None and table.num_rows:
        slots = table.column("slot").to_numpy()
        counts[slots.astype(int)] = table.column("n").to_numpy()
    return counts
