"""Reads of the prediction log and its labels for the API, the SDK and the CLI (#15.26).

One query shape, :class:`LogQuery`, is validated once for both SDK transports and the
REST routes (``GET /v1/predictions``, ``GET /v1/feedback``): the embedded transport builds
it in-process, the HTTP transport builds it before sending, and the routes build it from
the query string, so a bad ``since`` or ``limit`` is the same 4xx/InvalidInput naming the
field everywhere.

Size: the JSON form carries at most :data:`MAX_JSON_ROWS` rows (the newest of the window,
with ``truncated`` set when older rows were left out); no cursor pagination — narrow
``until``/``since``, or ask for ``format=arrow``, which sends the whole window (or
``limit`` newest rows) as one Arrow IPC stream body (built in memory: the window's rows
are bounded by what the server can hold). The SDK's DataFrame methods always use Arrow.

This module imports no pandas/pyarrow/DuckDB at the top: the HTTP client validates with
:class:`LogQuery` and a CLI read over ``--server`` must stay light (#15.14).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keel._durations import parse_time
from keel._models import invalid_input

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from keel.monitoring.feedback import FeedbackStore

__all__ = [
    "MAX_JSON_ROWS",
    "LogKind",
    "LogPage",
    "LogQuery",
    "json_rows",
    "read_labels",
    "read_predictions",
]

#: Most rows one JSON answer carries (``limit`` above it is a 422 naming ``limit``).
MAX_JSON_ROWS = 10_000
LogKind = Literal["predictions", "labels"]


class LogQuery(BaseModel):
    """Filters of a prediction-log or label read; ``limit`` keeps the newest rows."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1, max_length=256)
    version: int | None = Field(default=None, ge=1, le=2_147_483_647)
    deployment: str | None = Field(default=None, min_length=1, max_length=256)
    arm: str | None = Field(default=None, min_length=1, max_length=256)
    since: str | None = Field(
        default=None, max_length=64, description="ISO time or an age: 15m, 2h, 7d, 1w."
    )
    until: str | None = Field(default=None, max_length=64, description="Window end (exclusive).")
    columns: list[str] | None = Field(default=None, max_length=1_000)
    limit: int | None = Field(default=None, ge=1, description="Newest rows to keep.")
    as_of: str | None = Field(
        default=None, max_length=64, description="Labels: only those received by then."
    )

    @classmethod
    def build(cls, **fields: Any) -> LogQuery:
        """The query, or InvalidInput naming the first bad field (same on every path)."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise invalid_input(exc) from None

    @field_validator("since", "until", "as_of")
    @classmethod
    def _time(cls, value: str | None, info: Any) -> str | None:
        # Checked here (raises InvalidInput naming the field); re-parsed at read time so
        # that an age like "2h" is relative to the read, not to the validation.
        parse_time(value, info.field_name)
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not c or len(c) > 256 for c in value):
            from keel.errors import InvalidInput

            raise InvalidInput("columns must be non-empty names", field="columns")
        return value or None

    def window(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """``since`` and ``until`` as UTC datetimes (ages measured from now)."""
        start, end = parse_time(self.since, "since"), parse_time(self.until, "until")
        if start is not None and end is not None and start >= end:
            from keel.errors import InvalidInput

            raise InvalidInput("since must be before until", field="since")
        return start, end

    def json_limit(self) -> int:
        """The row cap of a JSON answer: ``limit``, at most :data:`MAX_JSON_ROWS`."""
        if self.limit is not None and self.limit > MAX_JSON_ROWS:
            from keel.errors import InvalidInput

            raise InvalidInput(
                f"limit: at most {MAX_JSON_ROWS:,} rows as JSON; use format=arrow for more",
                field="limit",
            )
        return self.limit or MAX_JSON_ROWS


class LogPage(BaseModel):
    """A JSON answer: rows oldest first (the newest ``limit`` of the window)."""

    rows: list[dict[str, Any]]
    truncated: bool = Field(description="Older rows of the window were left out.")


def read_predictions(query: LogQuery, root: Path, limit: int | None = None) -> pa.Table:
    """Logged predictions matching ``query`` (``limit`` overrides ``query.limit``)."""
    from keel.serving.predquery import predictions

    start, end = query.window()
    return predictions(
        query.model,
        query.version,
        start,
        end,
        columns=query.columns,
        limit=limit or query.limit,
        root=root,
        deployment=query.deployment,
        arm=query.arm,
        newest=True,
    )


def read_labels(query: LogQuery, feedback: FeedbackStore, limit: int | None = None) -> pa.Table:
    """Labelled predictions matching ``query``: the prediction columns plus ``label``,
    ``label_value`` and ``label_delay_s`` (the newest label received by ``as_of``)."""
    import pyarrow as pa

    from keel.errors import InvalidInput

    start, end = query.window()
    frame = feedback.labelled(query.model, query.version, start, end, as_of=query.as_of)
    for name in ("deployment", "arm"):
        value = getattr(query, name)
        if value is not None and not frame.empty:
            frame = frame[frame[name] == value]
    if query.columns and not frame.empty:
        unknown = [c for c in query.columns if c not in frame.columns]
        if unknown:
            raise InvalidInput(f"unknown column in {unknown}", field="columns")
        frame = frame[list(dict.fromkeys(("model", "version", *query.columns)))]
    keep = limit or query.limit
    if keep is not None:
        frame = frame.tail(keep)
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _cell(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cell(v) for v in value]
    return value


def json_rows(table: pa.Table, cap: int) -> LogPage:
    """The newest ``cap`` rows of a table read with ``limit=cap + 1``, as JSON-ready dicts."""
    truncated = table.num_rows > cap
    kept = table.slice(table.num_rows - cap) if truncated else table
    rows = [{k: _cell(v) for k, v in row.items()} for row in kept.to_pylist()]
    return LogPage(rows=rows, truncated=truncated)
