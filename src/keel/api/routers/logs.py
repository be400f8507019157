"""REST reads of the prediction log and its labels: ``GET /v1/predictions``, ``GET /v1/feedback``.

Both take the filters of :class:`keel.monitoring.logreads.LogQuery` as query parameters
and answer JSON (at most ``MAX_JSON_ROWS`` rows, the newest of the window, with
``truncated``) or, with ``format=arrow``, the whole window as an Arrow IPC stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from keel.api.deps import Svc
from keel.monitoring.logreads import LogPage, LogQuery, json_rows, read_labels, read_predictions

if TYPE_CHECKING:
    import pyarrow as pa

router = APIRouter(tags=["monitoring"])

Format = Literal["json", "arrow"]
_ARROW_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/vnd.apache.arrow.stream": {}}}
}


def _query(**fields: object) -> LogQuery:
    return LogQuery.build(**{k: v for k, v in fields.items() if v is not None})


def _answer(table: pa.Table, fmt: Format, cap: int | None) -> Response | LogPage:
    from keel.features.wire import ARROW_STREAM, write_table

    if fmt == "arrow":
        return Response(write_table(table, ARROW_STREAM), media_type=ARROW_STREAM)
    assert cap is not None
    return json_rows(table, cap)


@router.get("/v1/predictions", response_model=LogPage, responses=_ARROW_DOC)
async def predictions(
    svc: Svc,
    model: str | None = None,
    version: int | None = None,
    deployment: str | None = None,
    arm: str | None = None,
    since: str | None = Query(None, description="ISO time or an age: 15m, 2h, 7d, 1w."),
    until: str | None = Query(None, description="Window end (exclusive), default now."),
    columns: list[str] | None = Query(None, description="Only these columns (repeated)."),
    limit: int | None = Query(None, description="Newest rows; JSON: at most 10,000."),
    format: Format = "json",
) -> Response | LogPage:
    """Logged predictions of a window, oldest first (the newest ``limit`` rows)."""
    query = _query(
        model=model,
        version=version,
        deployment=deployment,
        arm=arm,
        since=since,
        until=until,
        columns=columns,
        limit=limit,
    )
    cap = query.json_limit() if format == "json" else None
    root = svc.feedback.predictions_root
    table = await run_in_threadpool(read_predictions, query, root, cap + 1 if cap else None)
    return _answer(table, format, cap)


@router.get("/v1/feedback", response_model=LogPage, responses=_ARROW_DOC)
async def labels(
    svc: Svc,
    model: str | None = None,
    version: int | None = None,
    deployment: str | None = None,
    arm: str | None = None,
    since: str | None = Query(None, description="ISO time or an age: 15m, 2h, 7d, 1w."),
    until: str | None = Query(None, description="Window end (exclusive), default now."),
    columns: list[str] | None = Query(None, description="Only these columns (repeated)."),
    limit: int | None = Query(None, description="Newest rows; JSON: at most 10,000."),
    as_of: str | None = Query(None, description="Only labels received by then."),
    format: Format = "json",
) -> Response | LogPage:
    """Labelled predictions of a window with ``label``, ``label_value``, ``label_delay_s``."""
    query = _query(
        model=model,
        version=version,
        deployment=deployment,
        arm=arm,
        since=since,
        until=until,
        columns=columns,
        limit=limit,
        as_of=as_of,
    )
    cap = query.json_limit() if format == "json" else None
    table = await run_in_threadpool(read_labels, query, svc.feedback, cap + 1 if cap else None)
    return _answer(table, format, cap)
