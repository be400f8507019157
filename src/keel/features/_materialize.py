"""Offline → online copies (materialisation), pushes, and the prediction-log adapter."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from keel.config import Settings
from keel.errors import InvalidInput, Unavailable
from keel.features._frames import Frame, cast_column, times_us, to_arrow
from keel.features.models import Entity, FeatureView
from keel.features.offline import Selection, connect, join_keys, q, register_source
from keel.features.online import OnlineStore, OnlineTable, Row

__all__ = [
    "Lookup",
    "layout",
    "lookups",
    "materialize_view",
    "push_rows",
    "served_from_prediction_log",
]

#: One view's part of an online lookup: layout, TTL (µs), output columns, value positions.
Lookup = tuple[OnlineTable, int, tuple[str, ...], tuple[int, ...]]

_BATCH = 100_000


def layout(view: FeatureView, entities: dict[str, Entity]) -> OnlineTable:
    """The online layout of ``view``."""
    return OnlineTable(
        view=view.name,
        keys=tuple(join_keys(view, entities).items()),
        features=tuple((f.name, f.dtype) for f in view.features),
    )


def lookups(selections: Sequence[Selection], entities: dict[str, Entity]) -> list[Lookup]:
    """Per view: what an online lookup reads and where each value goes."""
    plan = []
    for selection in selections:
        table = layout(selection.view, entities)
        names = [f for f, _ in table.features]
        positions = tuple(names.index(n) for n in selection.features)
        plan.append((table, selection.view.ttl * 1_000_000, selection.columns, positions))
    return plan


def _rows(batch: pa.RecordBatch | pa.Table, n_keys: int) -> list[Row]:
    columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
    keys = list(zip(*columns[:n_keys], strict=True))
    values = list(zip(*columns[n_keys + 1 :], strict=True))
    return list(zip(keys, columns[n_keys], values, strict=True))


def materialize_view(
    online: OnlineStore,
    view: FeatureView,
    entities: dict[str, Entity],
    start_us: int,
    end_us: int,
    *,
    memory_limit: str,
    temp_dir: Path,
    threads: int | None,
    progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Write the newest row per entity with event time in ``[start_us, end_us]``; rows written."""
    table = layout(view, entities)
    keys = ", ".join(q(k) for k, _ in table.keys)
    features = ", ".join(f"s.{q(f)}" for f, _ in table.features)
    packed = ", ".join(f"{q(f)} := {q(f)}" for f, _ in table.features)
    con = connect(memory_limit, temp_dir, threads)
    try:
        register_source(con, view, entities, "__v")
        # The view is already one row per (keys, event time), so the max is unique.
        result = con.sql(
            f"""SELECT {keys}, s.__fts, {features} FROM (
                SELECT {keys}, arg_max(struct_pack(__fts := __fts, {packed}), __fts) AS s
                FROM __v WHERE __fts BETWEEN {int(start_us)} AND {int(end_us)}
                GROUP BY {keys})"""
        ).to_arrow_table()
    finally:
        con.close()
    total = result.num_rows
    done = 0
    if progress:
        progress(view.name, 0, total)
    ttl_us = view.ttl * 1_000_000
    for batch in result.to_batches(max_chunksize=_BATCH):
        done += online.write(table, _rows(batch, len(table.keys)), ttl_us)
        if progress:
            progress(view.name, done, total)
    return done


def push_rows(
    online: OnlineStore, view: FeatureView, table: OnlineTable, rows: Frame
) -> tuple[int, list[dict[str, Any]]]:
    """Validate and write pushed rows; returns (rows written, updated entity keys).

    Every join key, the view's timestamp column and every feature must be
    present; values are cast to the declared types (an impossible cast names
    the column). Nothing is written when any check fails.
    """
    data = to_arrow(rows, "rows", (view.source.timestamp_field,))
    what = f"rows pushed to {view.name!r}"
    missing = [
        c
        for c in [k for k, _ in table.keys] + [f for f, _ in table.features]
        if c not in data.column_names
    ]
    if missing:
        raise InvalidInput(f"{what} lack columns: {', '.join(missing)}", field=missing[0])
    if data.num_rows == 0:
        return 0, []
    keys = [cast_column(data, k, t, what) for k, t in table.keys]
    for name, column in zip((k for k, _ in table.keys), keys, strict=True):
        if column.null_count:
            raise InvalidInput(f"{column.null_count} {what} have no {name!r}", field=name)
    times = times_us(data, view.source.timestamp_field, what)
    values = [cast_column(data, f, t, what) for f, t in table.features]
    batch = pa.table(
        [*keys, pa.array(times, pa.int64()), *values],
        names=[f"c{i}" for i in range(len(keys) + 1 + len(values))],
    )
    written = online.write(table, _rows(batch, len(keys)), view.ttl * 1_000_000)
    names = [k for k, _ in table.keys]
    updated = [dict(zip(names, key, strict=True)) for key, _, _ in _rows(batch, len(keys))]
    return written, updated


def served_from_prediction_log(
    settings: Settings, model: str, version: int | None, start: Any, end: Any
) -> pa.Table:
    """Served feature values from ``keel.serving.predictions``, ``f_`` prefixes removed.

    Raises ``Unavailable`` when this build has no prediction log.
    """
    try:
        serving = importlib.import_module("keel.serving")
    except ImportError as exc:  # pragma: no cover - the package ships with keel
        raise Unavailable("the prediction log is not available in this build") from exc
    predictions = getattr(serving, "predictions", None)
    if predictions is None:
        raise Unavailable("the prediction log (keel.serving.predictions) is not available")
    table: pa.Table = predictions(model, version, start, end, settings=settings)
    columns = {n[2:]: table.column(n) for n in table.column_names if n.startswith("f_")}
    if not columns:
        return pa.table({})
    return pa.table(columns)
