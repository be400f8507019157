"""CSV and SQL feature sources read into Arrow, for DuckDB to query.

Parquet sources DuckDB reads itself; CSV globs (pyarrow's reader) and SQL
sources (pandas over SQLAlchemy) are read here, with ``__fts``/``__cts`` in
epoch µs and ``__ord`` (source order, for the tie rule).
"""

from __future__ import annotations

import glob

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from keel.errors import InvalidInput
from keel.features._frames import times_us
from keel.features.models import FeatureView, FileSource, SqlSource

__all__ = ["read_arrow", "source_problem", "sql_failure"]


def read_arrow(view: FeatureView) -> pa.Table:
    """A CSV (glob) or SQL source as Arrow with ``__fts``/``__cts`` (µs) and ``__ord``."""
    source = view.source
    field = f"{view.name}.source"
    if isinstance(source, FileSource):
        try:
            parts = [pa_csv.read_csv(name) for name in sorted(glob.glob(source.path))]
            table = pa.concat_tables(parts, promote_options="default")
        except (OSError, pa.ArrowInvalid) as exc:
            raise InvalidInput(f"cannot read {source.path}: {exc}", field=f"{field}.path") from exc
    else:
        table = _read_sql(source, field)
    # Source order (the tie rule) is fixed before rows without an event time are dropped.
    table = table.append_column("__ord", pa.array(np.arange(table.num_rows), pa.int64()))
    what = f"source of {view.name!r}"
    if source.timestamp_field in table.column_names:
        table = table.filter(pc.is_valid(table.column(source.timestamp_field)))
        times = times_us(table, source.timestamp_field, what)
        table = table.append_column("__fts", pa.array(times, pa.int64()))
    created_field = source.created_timestamp_field
    if created_field and created_field in table.column_names:
        column = table.column(created_field)
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        created = np.zeros(table.num_rows, dtype=np.int64)
        if valid.any():
            created[valid] = times_us(table.filter(pa.array(valid)), created_field, what)
        table = table.append_column("__cts", pa.array(created, pa.int64(), mask=~valid))
    return table


def _read_sql(source: SqlSource, field: str) -> pa.Table:
    import pandas as pd
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(source.url)
    query = source.query or f"SELECT * FROM {source.table}"
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(text(query), conn)
    except SQLAlchemyError as exc:
        raise InvalidInput(sql_failure(source.url, exc), field=f"{field}.url") from exc
    finally:
        engine.dispose()
    return pa.Table.from_pandas(frame, preserve_index=False)


def sql_failure(url: str, exc: BaseException) -> str:
    """Why a SQL source failed: host and database (never the password) and the driver's
    own first line, instead of only the exception class."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    where = f"host {parsed.host or 'local'}, database {parsed.database or '-'}"
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    detail = reason[0] if reason else exc.__class__.__name__
    return f"cannot read SQL source ({where}): {exc.__class__.__name__}: {detail}"


def source_problem(view: FeatureView) -> str | None:
    """Why ``view``'s source cannot be read now (no file matches, database unreachable),
    or None. A cheap check for ``apply`` to warn with; it reads no rows."""
    source = view.source
    if isinstance(source, FileSource):
        if not glob.glob(source.path):
            return f"{view.name}: no file matches {source.path}"
        return None
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    # A short connect timeout: apply must not hang on an unreachable host.
    args = {"connect_timeout": 3} if source.url.startswith(("postgresql", "mysql")) else {}
    try:
        engine = create_engine(source.url, connect_args=args)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        return f"{view.name}: {sql_failure(source.url, exc)}"
    try:
        with engine.connect():
            return None
    except SQLAlchemyError as exc:
        return f"{view.name}: {sql_failure(source.url, exc)}"
    finally:
        engine.dispose()
