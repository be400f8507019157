"""Resolving feature references and running the point-in-time join."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.errors import InvalidInput, NotFound
from keel.features._asof import Lookup, fetch, parallel, sort_all
from keel.features._frames import Frame, cast_column, times_us, to_arrow
from keel.features._sources import prepared_sources
from keel.features.models import Entity, FeatureService, FeatureView
from keel.features.offline import (
    Selection,
    connect,
    historical_query,
    join_keys,
    lit,
    q,
    register_source,
    time_expr,
)

__all__ = [
    "Catalog",
    "EntityRows",
    "attach",
    "entity_rows",
    "historical",
    "historical_to_parquet",
    "plan_lookups",
    "resolve",
]


@dataclass(frozen=True)
class Catalog:
    """A snapshot of the live definitions."""

    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)


def resolve(
    catalog: Catalog, features: Sequence[str] | str, *, full_names: bool = False
) -> list[Selection]:
    """``["view:feature", "view:*"]`` or a feature-service name → one selection per view.

    Unknown names raise ``NotFound`` naming every unknown reference; two
    features with the same output name raise ``InvalidInput`` (use ``full_names``).
    """
    if isinstance(features, str):
        service = catalog.services.get(features)
        if service is None:
            raise NotFound(f"unknown feature service {features!r}", field="features")
        refs: Sequence[str] = service.features
    else:
        refs = list(features)
    if not refs:
        raise InvalidInput("no features requested", field="features")
    wanted: dict[str, list[str]] = {}
    unknown: list[str] = []
    for ref in refs:
        if not isinstance(ref, str) or ":" not in ref:
            raise InvalidInput(f"{ref!r} is not 'view:feature'", field="features")
        view_name, _, feature = ref.partition(":")
        view = catalog.views.get(view_name)
        if view is None or (feature != "*" and view.feature(feature) is None):
            unknown.append(ref)
            continue
        names = [f.name for f in view.features] if feature == "*" else [feature]
        chosen = wanted.setdefault(view_name, [])
        chosen.extend(n for n in names if n not in chosen)
    if unknown:
        raise NotFound(f"unknown features: {', '.join(unknown)}", field="features", unknown=unknown)
    selections = []
    seen: dict[str, str] = {}
    for view_name, names in wanted.items():
        columns = tuple(f"{view_name}__{n}" if full_names else n for n in names)
        for column in columns:
            if column in seen:
                raise InvalidInput(
                    f"feature name {column!r} comes from {seen[column]!r} and {view_name!r}; "
                    "pass full_names=True for view__feature columns",
                    field="features",
                )
            seen[column] = view_name
        selections.append(Selection(catalog.views[view_name], tuple(names), columns))
    return selections


@dataclass(frozen=True)
class EntityRows:
    """What retrieval needs of the entity rows: typed join keys and UTC epoch µs."""

    keys: dict[str, pa.ChunkedArray]
    times: np.ndarray[Any, np.dtype[np.int64]]


def entity_rows(
    entity_df: Frame, selections: Sequence[Selection], catalog: Catalog, timestamp_column: str
) -> EntityRows:
    """The join keys every selection needs (cast to the entity's type) and the times.

    Raises ``InvalidInput`` naming the timestamp column or join key that is
    missing, null, or of the wrong type.
    """
    keys: dict[str, Any] = {}
    for selection in selections:
        keys.update(join_keys(selection.view, catalog.entities))
    if isinstance(entity_df, pa.Table):
        present = entity_df.column_names
    elif isinstance(entity_df, pd.DataFrame):
        present = [str(c) for c in entity_df.columns]
    else:
        raise InvalidInput(
            "entity_df must be a pandas DataFrame or a pyarrow Table", field="entity_df"
        )
    if timestamp_column not in present:
        raise InvalidInput(
            f"entity rows have no timestamp column {timestamp_column!r} "
            f"(columns: {', '.join(present)})",
            field=timestamp_column,
        )
    if isinstance(entity_df, pd.DataFrame):
        # Only the columns the join reads cross into Arrow; the rest stay in pandas.
        wanted = [c for c in (*keys, timestamp_column) if c in entity_df.columns]
        entity_df = entity_df[wanted]
    entity = to_arrow(entity_df, "entity_df", (timestamp_column,))
    columns: dict[str, pa.ChunkedArray] = {}
    for key, dtype in keys.items():
        if key not in entity.column_names:
            raise InvalidInput(
                f"entity rows have no join key {key!r} (needed by the requested features)",
                field=key,
            )
        column = cast_column(entity, key, dtype, "the entity rows")
        if column.null_count:
            raise InvalidInput(f"{column.null_count} entity rows have no {key!r}", field=key)
        columns[key] = column
    return EntityRows(columns, times_us(entity, timestamp_column, "entity"))


def plan_lookups(
    catalog: Catalog,
    selections: Sequence[Selection],
    *,
    memory_limit: str,
    temp_dir: Path,
    threads: int | None,
) -> list[Lookup]:
    """One lookup per selection: its join keys, prepared source and TTL."""
    views = [s.view for s in selections]
    prepared = prepared_sources(
        views, catalog.entities, memory_limit=memory_limit, temp_dir=temp_dir, threads=threads
    )
    return [
        Lookup(tuple(join_keys(v, catalog.entities)), p, v.ttl * 1_000_000)
        for v, p in zip(views, prepared, strict=True)
    ]


def historical(
    catalog: Catalog,
    entity_df: Frame,
    selections: Sequence[Selection],
    *,
    timestamp_column: str,
    memory_limit: str,
    temp_dir: Path,
    threads: int | None,
    engine: str = "local",
    ray_address: str | None = None,
) -> pa.Table:
    """Feature columns for each entity row, in entity-row order.

    ``engine="ray"`` runs the lookups as Ray tasks over key-hash chunks of the
    entity rows (see ``_ray``); the answer is the same.
    """
    rows = entity_rows(entity_df, selections, catalog, timestamp_column)
    names = [s.features for s in selections]
    if engine == "ray":
        from keel.features._ray import ray_positions

        lookups = plan_lookups(
            catalog, selections, memory_limit=memory_limit, temp_dir=temp_dir, threads=threads
        )
        found = ray_positions(lookups, rows.keys, rows.times, address=ray_address)
        parts = parallel(
            lambda i: lookups[i].source.gather(found[i], names[i]), range(len(lookups)), threads
        )
    else:
        # Sorting the entity rows needs only their keys: it runs while the sources load.
        tuples = [tuple(join_keys(s.view, catalog.entities)) for s in selections]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keel-entity") as background:
            sorting = background.submit(sort_all, tuples, rows.keys, rows.times, threads)
            lookups = plan_lookups(
                catalog, selections, memory_limit=memory_limit, temp_dir=temp_dir, threads=threads
            )
            orders = sorting.result()
        parts = fetch(lookups, names, rows.keys, orders, threads)
    columns: dict[str, pa.Array] = {}
    for selection, values in zip(selections, parts, strict=True):
        columns.update(zip(selection.columns, values, strict=True))
    return pa.table(columns)


def historical_to_parquet(
    catalog: Catalog,
    entity_path: Path,
    destination: Path,
    selections: Sequence[Selection],
    *,
    timestamp_column: str,
    memory_limit: str,
    temp_dir: Path,
    threads: int | None,
) -> int:
    """Entity Parquet → entity columns + features Parquet, in DuckDB, in file order; rows."""
    if not entity_path.is_file():
        raise InvalidInput(f"entity file {entity_path} does not exist", field="entity_path")
    con = connect(memory_limit, temp_dir, threads)
    try:
        con.execute(
            "CREATE TEMP VIEW __raw AS SELECT * FROM read_parquet("
            f"{lit(str(entity_path))}, file_row_number=true)"
        )
        columns = {
            str(r[0]): str(r[1]) for r in con.execute("DESCRIBE SELECT * FROM __raw").fetchall()
        }
        if timestamp_column not in columns:
            raise InvalidInput(
                f"entity rows have no timestamp column {timestamp_column!r}", field=timestamp_column
            )
        keys: dict[str, Any] = {}
        for selection in selections:
            keys.update(join_keys(selection.view, catalog.entities))
        for key in [timestamp_column, *keys]:
            if key not in columns:
                raise InvalidInput(f"entity rows have no column {key!r}", field=key)
            nulls = con.execute(f"SELECT count(*) FROM __raw WHERE {q(key)} IS NULL").fetchone()
            if nulls and nulls[0]:
                raise InvalidInput(f"{nulls[0]} entity rows have no {key!r}", field=key)
        ts = time_expr(timestamp_column, columns[timestamp_column], "the entity rows")
        con.execute(f"CREATE TEMP VIEW __entity AS SELECT *, {ts} AS __ts FROM __raw")
        for i, selection in enumerate(selections):
            register_source(con, selection.view, catalog.entities, f"__v{i}")
        query = historical_query(
            selections,
            catalog.entities,
            head="e.* EXCLUDE (__ts, file_row_number)",
            tail="ORDER BY e.file_row_number",
        )
        destination.parent.mkdir(parents=True, exist_ok=True)
        written = con.execute(
            f"COPY ({query}) TO {lit(str(destination))} (FORMAT parquet)"
        ).fetchone()
    finally:
        con.close()
    return int(written[0]) if written else 0


def attach(entity_df: Frame, features: pa.Table, as_arrow: bool) -> pd.DataFrame | pa.Table:
    """The entity rows, unchanged, with the feature columns appended."""
    if isinstance(entity_df, pa.Table):
        out = entity_df
        for name in features.column_names:
            out = out.append_column(name, features.column(name))
        return out if as_arrow else out.to_pandas()
    if as_arrow:
        out = to_arrow(entity_df, "entity_df")
        for name in features.column_names:
            out = out.append_column(name, features.column(name))
        return out
    # split_blocks + self_destruct: one pandas block per column, Arrow buffers freed as
    # they convert, so the peak is one copy of the features rather than two.
    values = features.to_pandas(split_blocks=True, self_destruct=True)
    values.index = entity_df.index
    return pd.concat([entity_df, values], axis=1)
