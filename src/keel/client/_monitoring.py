"""Monitoring half of :class:`keel.Client`: feedback, monitors, their runs and reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel._models import invalid_input
from keel.errors import InvalidInput
from keel.monitoring.models import Monitor, MonitorRun, MonitorSpec, SavedMonitor

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["MonitoringMixin"]

#: Rows per request when uploading a feedback file.
FEEDBACK_CHUNK = 10_000


class MonitoringMixin:
    """Monitoring methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def log_feedback(self, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Send ground-truth labels: ``{"request_id", "label"}`` or
        ``{"entity_key", "event_time", "label"}`` per item. Duplicates are ignored;
        unknown request ids are counted in the result, not rejected. No items: nothing
        is sent and nothing is stored (a label job with no new labels is not an error)."""
        batch = [dict(i) for i in items]
        if not batch:
            return {"accepted": 0, "duplicates": 0, "unknown": 0, "unknown_examples": []}
        return self.transport.submit_feedback(batch)

    def log_feedback_file(self, path: str | Path) -> dict[str, int]:
        """Upload labels from a CSV or Parquet file with the same columns, in chunks."""
        from keel.monitoring.frames import read_frame

        frame = read_frame(Path(path), field="path")
        allowed = {"request_id", "entity_key", "event_time", "label", "model"}
        if "label" not in frame.columns:
            raise InvalidInput("path: the file has no 'label' column", field="path")
        extra = sorted(set(frame.columns) - allowed)
        if extra:
            raise InvalidInput(f"path: unexpected columns {extra}", field="path")
        totals = {"accepted": 0, "duplicates": 0, "unknown": 0}
        for start in range(0, len(frame), FEEDBACK_CHUNK):
            chunk = frame.iloc[start : start + FEEDBACK_CHUNK]
            items = [
                {k: v for k, v in row.items() if not _missing(v)}
                for row in chunk.to_dict("records")
            ]
            result = self.log_feedback(items)
            for key in totals:
                totals[key] += int(result[key])
        return totals

    def create_monitor(
        self, name: str, model: str, *, drop_resolution_rules: bool = False, **spec: Any
    ) -> SavedMonitor:
        """Create or replace a monitor (fields of :class:`MonitorSpec`); InvalidInput names
        a bad field, and columns the monitor could never find are refused now.

        A replace keeps the rules incident resolutions added to the monitor (their
        ``source`` is ``decision N``) unless ``spec`` lists them or ``drop_resolution_rules``
        drops those it does not list; ``resolution_rules`` of the result says which were
        kept or dropped.
        """
        from pydantic import ValidationError

        try:
            checked = MonitorSpec(name=name, model=model, **spec)
        except ValidationError as exc:  # the same error on both transports (#15.22)
            raise invalid_input(exc) from None
        return self.transport.create_monitor(checked, bool(drop_resolution_rules))

    def get_monitor(self, name: str) -> Monitor:
        """One monitor."""
        return self.transport.get_monitor(name)

    def list_monitors(self) -> list[Monitor]:
        """Every monitor."""
        return self.transport.list_monitors()

    def delete_monitor(self, name: str) -> None:
        """Delete a monitor and its runs."""
        self.transport.delete_monitor(name)

    def run_monitor(
        self,
        name: str,
        *,
        window_end: datetime | int | str | None = None,
        as_of: datetime | int | str | None = None,
    ) -> MonitorRun:
        """Evaluate a monitor over the window ending at ``window_end`` (default now); the
        result is stored and returned.

        ``window_end`` and ``as_of`` are datetimes (naive = UTC), epoch milliseconds,
        ISO-8601 text or ages like ``7d``, read here so both transports agree. A past
        ``window_end`` evaluates a past window (backfill, replay); ``as_of`` counts only
        the labels received by then.
        """
        return self.transport.run_monitor(
            name, _epoch_ms(window_end, "window_end"), _epoch_ms(as_of, "as_of")
        )

    def monitor_runs(self, name: str, limit: int = 50) -> list[MonitorRun]:
        """Stored runs of a monitor, newest first."""
        return self.transport.monitor_runs(name, limit)

    def monitor_run(self, name: str, run_id: str) -> MonitorRun:
        """One stored run."""
        return self.transport.monitor_run(name, run_id)

    def monitor_report(self, name: str, run_id: str) -> str:
        """A self-contained HTML report of one run."""
        return self.transport.monitor_report(name, run_id)

    def diagnose_monitor_run(
        self, name: str, run_id: str, slice_by: list[str] | None = None
    ) -> dict[str, Any]:
        """Which of data drift, concept drift, a data-quality break or a stale source best
        explains a run's window: verdict, scores, evidence, SHAP attributions, slices."""
        return self.transport.monitor_diagnosis(name, run_id, list(slice_by or []))


def _epoch_ms(value: datetime | int | str | None, field: str) -> int | None:
    from keel.serving.predquery import parse_time

    moment = parse_time(value, field)
    return None if moment is None else int(moment.timestamp() * 1000)


def _missing(value: Any) -> bool:
    import pandas as pd  # here: the client module must not import pandas (#15.14)

    return value is None or (isinstance(value, float) and value != value) or value is pd.NaT
