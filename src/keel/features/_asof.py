"""The in-memory point-in-time engine: as-of lookups by search over sorted rows.

A view's rows are *prepared* once: join keys become ranks among the source's
sorted distinct key values, rows are sorted by (key rank, event time), and
each row gets one int64 search value ``rank * width + time offset`` (offsets
start at 1). An entity row's as-of match is then the last source row whose
search value is ``<=`` the entity row's needle (what ``np.searchsorted``
answers; ``_Buckets`` finds it in a few vectorised passes instead of twenty
mispredicted probes). It is a match when its search value is at least
``rank * width + lowest offset``: that one comparison says it has the same
key rank (a row of a lower rank lies below ``rank * width``) and, with a TTL,
is not too old (the lowest offset is the entity time minus the TTL). The
search values start with a sentinel below every needle, so "no earlier row"
is position 0, and every feature column is stored *in sorted-row order* after
a null row at index 0: a lookup's positions index the columns directly,
misses included.

Why not DuckDB's ``ASOF JOIN`` here: it sorts both sides on every call and
the result comes back unordered, so entity order costs another pass over the
wide result. A prepared source is independent of the entity rows, so it is
built once per source version (see ``_sources``), and a lookup costs one
sort of the entity rows plus one search and one gather per view. The
Parquet → Parquet path (``write_historical_features``), for entity sets
larger than memory, still runs DuckDB's ``ASOF JOIN``.

Entity rows are searched in (key, time) order, so the search reads the index
and the search values nearly sequentially. Ranks are ranks in the *sorted*
distinct values, so sorting entity rows by their own key ranks also sorts
them by each source's key ranks. The matches then come out nearly
increasing, so :func:`fetch` reads each feature column sequentially in that
order and scatters the values to entity order once: two cache-friendly
passes, where gathering in entity order would be one random read per row
into a column that may not fit in cache (small columns, which do, are read
that way: ``_reader``).

Integer keys whose values span a small range (the usual ids) are ranked with
a direct-address table (a flag per value in the range, then a running count)
instead of a hash set: ``_dense_ranks`` and ``_dense_rank``; other keys use
Arrow's ``unique``/``index_in``. Both give the same ranks.

The parts live beside this module: key ranks (``_asof_keys``), sorted feature
columns (``_asof_columns``), the bucket index (``_asof_buckets``) and prepared
sources (``_asof_prepared``); this module sorts entity rows and fetches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa

from keel.features._asof_buckets import _Buckets  # noqa: F401  (re-exported for tests)
from keel.features._asof_columns import _validity
from keel.features._asof_keys import (  # noqa: F401  (private parts re-exported for tests)
    _INT64_MAX,
    Bools,
    Column,
    Ints,
    KeyRanks,
    _dense_rank,
    _dense_ranks,
    _distinct,
    _rank,
    key_ranks,
)
from keel.features._asof_prepared import Prepared, prepare

__all__ = [
    "Column",
    "EntityOrder",
    "Ints",
    "KeyRanks",
    "Lookup",
    "Prepared",
    "entity_order",
    "fetch",
    "fetch_view",
    "key_ranks",
    "parallel",
    "positions",
    "prepare",
    "sort_all",
    "sort_entities",
]

Reader: TypeAlias = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]

T = TypeVar("T")
R = TypeVar("R")

#: A view whose columns are at most this large (8 bytes a row) is read in entity-row
#: order: random reads, but within a cache-sized array they cost less than a scatter.
_CACHED_BYTES = 4 << 20


@dataclass(frozen=True)
class EntityOrder:
    """Entity rows sorted by key tuple, then (roughly) by time: the order lookups run in."""

    order: Ints  # the permutation
    codes: Ints  # key rank of each row, in sorted order
    times: Ints  # time of each row, in sorted order
    distinct: KeyRanks  # the entity rows' own distinct keys

    def source_codes(self, source: Prepared, columns: Sequence[Column]) -> Ints:
        """Each sorted row's key rank in ``source`` (-1: the source never saw the key)."""
        if len(self.distinct.values) == 1:
            # Map the few distinct keys, then gather: cheaper than a lookup per row.
            mapping = _rank(self.distinct.values[0], source.keys.values[0])
            return mapping[self.codes] if len(mapping) else self.codes.copy()
        return source.keys.codes(columns)[self.order]


def sort_entities(columns: Sequence[Column], times: Ints) -> EntityOrder:
    """Sort entity rows by key tuple, then (roughly) by time.

    The order only makes lookups fast, never changes their answers, so time may
    be coarsened: (key rank, coarse time, row) pack into one int64 and a plain
    ``np.sort`` (vectorised, about 3× faster than ``argsort``) gives the order.
    """
    distinct, codes = key_ranks(columns)
    rows = len(times)
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return EntityOrder(empty, empty, empty, distinct)
    row_bits = max(1, (rows - 1).bit_length())
    code_bits = max(1, int(codes.max()).bit_length())
    # rows ≤ 2^31 leaves at least one bit of time: the coarser, the less sorted.
    time_bits = max(0, 63 - row_bits - code_bits)
    low = int(times.min())
    span = int(times.max()) - low
    if span > _INT64_MAX:
        packed = np.zeros(rows, dtype=np.int64)  # times - low would wrap: keys alone
    else:
        packed = times - low
        packed >>= max(0, span.bit_length() - time_bits)
    packed <<= row_bits
    codes = codes if codes.flags.writeable else codes.copy()
    codes <<= time_bits + row_bits
    packed |= codes
    packed |= np.arange(rows)
    packed.sort()
    order = packed & ((1 << row_bits) - 1)
    # The codes are the packed values' top bits (the time part never reaches them):
    # cheaper than gathering them.
    packed >>= time_bits + row_bits
    return EntityOrder(order, packed, times[order], distinct)


def entity_order(columns: Sequence[Column], times: Ints) -> Ints:
    """The permutation of :func:`sort_entities`."""
    return sort_entities(columns, times).order


@dataclass(frozen=True)
class Lookup:
    """One view's part of a retrieval: its join keys, prepared rows and TTL (µs, 0: none)."""

    keys: tuple[str, ...]
    source: Prepared
    ttl_us: int


def sort_all(
    key_tuples: Sequence[tuple[str, ...]],
    keys: dict[str, Column],
    times: Ints,
    threads: int | None = None,
) -> dict[tuple[str, ...], EntityOrder]:
    """The entity rows sorted once per distinct join-key tuple."""
    tuples = list(dict.fromkeys(key_tuples))
    done = parallel(lambda t: sort_entities([keys[k] for k in t], times), tuples, threads)
    return dict(zip(tuples, done, strict=True))


def _matches(lookup: Lookup, entity: EntityOrder, keys: dict[str, Column]) -> Ints:
    """One view's matches (0: none) for the entity rows in ``entity`` order."""
    codes = entity.source_codes(lookup.source, [keys[k] for k in lookup.keys])
    return lookup.source.match(codes, entity.times, lookup.ttl_us)


def positions(
    lookups: Sequence[Lookup],
    keys: dict[str, Column],
    times: Ints,
    threads: int | None = None,
    orders: dict[tuple[str, ...], EntityOrder] | None = None,
) -> list[Ints]:
    """Per lookup, each entity row's as-of position in the prepared rows (-1: none).

    Entity rows are searched in :func:`sort_all` order (``orders`` when the caller
    sorted them already); the positions come back in entity-row order, for
    :meth:`Prepared.gather`. Views run on up to ``threads`` threads (numpy
    releases the GIL in sorts, searches and gathers).
    """
    if orders is None:
        orders = sort_all([lookup.keys for lookup in lookups], keys, times, threads)

    def one(lookup: Lookup) -> Ints:
        entity = orders[lookup.keys]
        found = _matches(lookup, entity, keys)
        found -= 1
        at = np.empty_like(found)
        at[entity.order] = found
        return at

    return parallel(one, lookups, threads)


def _scatter(values: np.ndarray[Any, Any], order: Ints) -> np.ndarray[Any, Any]:
    """``out`` with ``out[order] = values``: sorted entity rows back in entity order."""
    out = np.empty_like(values)
    out[order] = values
    return out


def _reader(source: Prepared, found: Ints, order: Ints) -> tuple[Bools, Reader]:
    """Which entity rows found a match, and how to read a column at the matches.

    Both in entity-row order. A small source is read through the matches in
    entity order (random reads, but in cache); a large one in sorted order
    (nearly sequential, into one reused buffer per dtype) and scattered once
    per column.
    """
    if (source.rows + 1) * 8 <= _CACHED_BYTES:
        at = _scatter(found, order)
        return at > 0, lambda values: np.take(values, at)
    scratch: dict[np.dtype[Any], np.ndarray[Any, Any]] = {}

    def read(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        buffer = scratch.get(values.dtype)
        if buffer is None:
            buffer = scratch[values.dtype] = np.empty(len(found), dtype=values.dtype)
        return _scatter(np.take(values, found, out=buffer), order)

    return _scatter(found > 0, order), read


def fetch_view(
    lookup: Lookup, names: Sequence[str], keys: dict[str, Column], entity: EntityOrder
) -> list[pa.Array]:
    """The view's ``names`` feature columns for the entity rows, in entity-row order.

    :func:`positions` then :meth:`Prepared.gather`, fused: the matches stay in
    sorted entity order and each column is read as ``_reader`` says, instead
    of scattering the positions and reading the columns in random order.
    ``entity`` is the entity rows sorted for the view's join keys.
    """
    matched, read = _reader(lookup.source, _matches(lookup, entity, keys), entity.order)
    hit = _validity(matched)
    out = []
    for name in names:
        column = lookup.source.columns[name]
        valid = hit if column.valid is None else _validity(read(column.valid))
        out.append(column.array(read(column.values), valid))
    return out


def fetch(
    lookups: Sequence[Lookup],
    names: Sequence[Sequence[str]],
    keys: dict[str, Column],
    orders: dict[tuple[str, ...], EntityOrder],
    threads: int | None = None,
) -> list[list[pa.Array]]:
    """:func:`fetch_view` for each lookup, views on up to ``threads`` threads."""
    return parallel(
        lambda i: fetch_view(lookups[i], names[i], keys, orders[lookups[i].keys]),
        range(len(lookups)),
        threads,
    )


def parallel(fn: Callable[[T], R], items: Sequence[T], threads: int | None) -> list[R]:
    """``[fn(item) for item in items]`` on up to ``threads`` threads (default: CPU count)."""
    workers = min(len(items), threads or os.cpu_count() or 1)
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keel-asof") as pool:
        return list(pool.map(fn, items))
