"""How the prediction log's writer turns a drained batch into segments (one per partition)."""

from __future__ import annotations

import itertools
import os
from operator import attrgetter
from pathlib import Path
from typing import Any

import pyarrow as pa

from keel.serving._segments import records_to_table, served_to_table, write_segment
from keel.serving.records import PredictionRecord, ServedRequest

__all__ = ["HOUR_MS", "group_batch", "group_rows", "rows_of", "write_group"]

HOUR_MS = 3_600_000
_sequence = itertools.count()


def rows_of(item: PredictionRecord | ServedRequest) -> int:
    """How many predictions a buffered item holds."""
    return len(item.outputs) if type(item) is ServedRequest else 1


def group_batch(batch: list[Any]) -> tuple[dict[tuple[Any, ...], list[Any]], int]:
    """``({(model, version, hour[, columns]): items}, invalid rows)`` of a drained batch.

    Whole requests group further by their feature columns (each group its own segment);
    items whose model, version or time cannot be read are left out and their rows counted.
    Keys are integers: building the directory path per record (datetime, quoting) would
    cost more than converting the record.
    """
    single = _one_group(batch)
    if single is not None:
        return single, 0
    groups: dict[tuple[Any, ...], list[Any]] = {}
    invalid = 0
    for item in batch:
        try:
            key: tuple[Any, ...] = (str(item.model), int(item.version), int(item.at_ms) // HOUR_MS)
        except (TypeError, ValueError, OverflowError):
            invalid += rows_of(item)
            continue
        if type(item) is ServedRequest:
            key += (tuple(item.columns),)
        groups.setdefault(key, []).append(item)
    return groups, invalid


def group_rows(key: tuple[Any, ...], items: list[Any]) -> int:
    """The predictions of one group of :func:`group_batch`."""
    if len(key) > 3:  # whole requests: their rows counted in C
        return sum(map(len, map(attrgetter("outputs"), items)))
    return len(items)


def write_group(
    key: tuple[Any, ...],
    items: list[Any],
    schema: dict[str, pa.DataType],
    folder: Path,
    *,
    fsync: bool,
) -> Path:
    """Write one group of :func:`group_batch` as a new segment in its partition ``folder``.

    ``schema`` (the version's feature types) is read and widened in place.
    """
    model, version = key[0], key[1]
    to_table = served_to_table if len(key) > 3 else records_to_table
    table = to_table(model, version, items, schema)
    name = f"part-{items[0].at_ms}-{os.getpid()}-{next(_sequence):06d}.parquet"
    return write_segment(table, folder, name, fsync=fsync)


def _one_group(batch: list[Any]) -> dict[tuple[Any, ...], list[Any]] | None:
    """``{key: items}`` when every item is a gateway request of one model and hour whose
    feature layout is one object per version (the usual batch: one version, or the arms
    of a deployment); None when the batch must be grouped item by item.

    The checks and the split by version run in C (``map``, ``set``, ``sorted``,
    ``groupby``): a Python loop over the batch cost about a microsecond a request in the
    serving interpreter, as much as converting it, and a two-arm deployment's batches
    always hold two versions.
    """
    if not batch or set(map(type, batch)) != {ServedRequest}:
        return None
    first = batch[0]
    if type(first.model) is not str or len(set(map(attrgetter("model"), batch))) != 1:
        return None
    versions = list(map(attrgetter("version"), batch))
    if set(map(type, versions)) != {int}:
        return None
    distinct = set(versions)
    layouts = set(zip(versions, map(id, map(attrgetter("columns"), batch)), strict=True))
    if len(layouts) != len(distinct):  # a version with two layout objects: item by item
        return None
    times = list(map(attrgetter("at_ms"), batch))
    if set(map(type, times)) != {int}:
        return None
    hour = min(times) // HOUR_MS
    if max(times) // HOUR_MS != hour:
        return None
    if len(distinct) == 1:
        return {(first.model, first.version, hour, tuple(first.columns)): batch}
    by_version = attrgetter("version")
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for version, group in itertools.groupby(sorted(batch, key=by_version), key=by_version):
        items = list(group)  # sorted() is stable: each version's items keep their order
        groups[(first.model, version, hour, tuple(items[0].columns))] = items
    return groups
