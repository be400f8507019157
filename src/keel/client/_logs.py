"""The prediction log and its labels in :class:`keel.Client`, the same on both transports.

Filters are checked by :class:`keel.monitoring.logreads.LogQuery`, the schema of the REST
routes ``GET /v1/predictions`` and ``GET /v1/feedback``; over HTTP the DataFrame methods
read an Arrow IPC stream, the ``*_page`` methods a capped JSON page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel.monitoring.logreads import LogPage, LogQuery

if TYPE_CHECKING:
    import datetime as dt

    import pandas as pd

    from keel.client._transport import Transport

    TimeInput = dt.datetime | int | str | None

__all__ = ["LogsMixin"]


def _query(
    model: str | None,
    version: int | None,
    deployment: str | None,
    arm: str | None,
    since: Any,
    until: Any,
    columns: Sequence[str] | None,
    limit: int | None,
    as_of: Any = None,
) -> LogQuery:
    from keel._durations import parse_time

    def text(value: Any, field: str) -> str | None:
        # datetimes and epoch ms travel as ISO text: one form for the query string
        moment = parse_time(value, field) if not isinstance(value, str) else None
        return moment.isoformat() if moment is not None else value

    fields = {
        "model": model,
        "version": version,
        "deployment": deployment,
        "arm": arm,
        "since": text(since, "since"),
        "until": text(until, "until"),
        "columns": None if columns is None else list(columns),
        "limit": limit,
        "as_of": text(as_of, "as_of"),
    }
    return LogQuery.build(**{k: v for k, v in fields.items() if v is not None})


class LogsMixin:
    """Prediction-log and label reads; mixed into :class:`keel.Client`."""

    transport: Transport

    def predictions(
        self,
        model: str | None = None,
        version: int | None = None,
        *,
        deployment: str | None = None,
        arm: str | None = None,
        since: TimeInput = None,
        until: TimeInput = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Logged predictions in ``[since, until)`` as a DataFrame, oldest first.

        ``since``/``until``: a datetime, epoch ms, an ISO time or an age (``2h``, ``7d``);
        ``limit`` keeps the newest rows; ``columns`` selects (``model`` and ``version``
        always come). Over HTTP the rows travel as one Arrow IPC stream.
        """
        query = _query(model, version, deployment, arm, since, until, columns, limit)
        frame: pd.DataFrame = self.transport.log_table("predictions", query).to_pandas()
        return frame

    def labels(
        self,
        model: str | None = None,
        version: int | None = None,
        *,
        deployment: str | None = None,
        arm: str | None = None,
        since: TimeInput = None,
        until: TimeInput = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
        as_of: TimeInput = None,
    ) -> pd.DataFrame:
        """Labelled predictions (``label``, ``label_value``, ``label_delay_s``), oldest first;
        ``as_of`` counts only the labels received by then. Filters as :meth:`predictions`."""
        query = _query(model, version, deployment, arm, since, until, columns, limit, as_of)
        frame: pd.DataFrame = self.transport.log_table("labels", query).to_pandas()
        return frame

    def prediction_page(
        self,
        model: str | None = None,
        version: int | None = None,
        *,
        deployment: str | None = None,
        arm: str | None = None,
        since: TimeInput = None,
        until: TimeInput = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> LogPage:
        """The newest ``limit`` (at most 10,000) predictions as JSON-ready rows; no pandas."""
        query = _query(model, version, deployment, arm, since, until, columns, limit)
        return self.transport.log_page("predictions", query)

    def label_page(
        self,
        model: str | None = None,
        version: int | None = None,
        *,
        deployment: str | None = None,
        arm: str | None = None,
        since: TimeInput = None,
        until: TimeInput = None,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
        as_of: TimeInput = None,
    ) -> LogPage:
        """The newest ``limit`` (at most 10,000) labelled predictions as JSON-ready rows."""
        query = _query(model, version, deployment, arm, since, until, columns, limit, as_of)
        return self.transport.log_page("labels", query)
