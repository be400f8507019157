"""The in-memory point-in-time engine: as-of lookups by binary search over sorted rows.

A view's rows are *prepared* once: join keys become ranks among the source's
sorted distinct key values, rows are sorted by (key rank, event time), and
each row gets one int64 search value ``rank * width + time offset``. An
entity row's as-of match is then one ``np.searchsorted`` away: the last
source row whose search value is ``<=`` the entity row's, if it has the same
key rank (and, with a TTL, is not too old).

Why not DuckDB's ``ASOF JOIN`` here: it sorts both sides on every call and
the result comes back unordered, so entity order costs another pass over the
wide result. A prepared source is independent of the entity rows, so it is
built once per source version (see ``_sources``), and a lookup costs one
sort of the entity rows plus one binary search and one gather per view. The
Parquet → Parquet path (``write_historical_features``), for entity sets
larger than memory, still runs DuckDB's ``ASOF JOIN``.

Entity rows are searched in (key, time) order: numpy's binary search starts
from the previous bound when the needles increase, which makes the search
several times faster than with needles in random order. Ranks are ranks in
the *sorted* distinct values, so sorting entity rows by their own key ranks
also sorts them by each source's key ranks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "EntityOrder",
    "KeyRanks",
    "Lookup",
    "Prepared",
    "entity_order",
    "key_ranks",
    "parallel",
    "positions",
    "prepare",
    "sort_all",
    "sort_entities",
]

Ints: TypeAlias = np.ndarray[Any, np.dtype[np.int64]]
Column: TypeAlias = pa.Array | pa.ChunkedArray

T = TypeVar("T")
R = TypeVar("R")

#: Search values must stay below this; past it times are replaced by their rank.
_SEARCH_LIMIT = 2**62


def _rank(column: Column, distinct: pa.Array) -> Ints:
    """Index of each value in ``distinct`` (-1 when absent)."""
    found = pc.index_in(column, value_set=distinct)
    return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)


@dataclass(frozen=True)
class KeyRanks:
    """Sorted distinct values of each join-key column, and of the folded ranks.

    With several key columns the per-column ranks fold left to right,
    ``rank * n_next + next_rank``, re-ranked after each step (``folds``) so
    that the codes stay dense and the order stays lexicographic.
    """

    values: tuple[pa.Array, ...]
    folds: tuple[Ints, ...]

    @property
    def size(self) -> int:
        """How many distinct key tuples there are."""
        return len(self.folds[-1]) if self.folds else len(self.values[0])

    def codes(self, columns: Sequence[Column]) -> Ints:
        """Rank of each row's key tuple among these distinct tuples (-1: not among them)."""
        codes = _rank(columns[0], self.values[0])
        for column, distinct, fold in zip(columns[1:], self.values[1:], self.folds, strict=True):
            part = _rank(column, distinct)
            known = (codes >= 0) & (part >= 0)
            combined = np.where(known, codes * len(distinct) + part, -1)
            at = np.minimum(np.searchsorted(fold, combined), max(len(fold) - 1, 0))
            hit = known & (fold[at] == combined) if len(fold) else np.zeros_like(known)
            codes = np.where(hit, at, -1)
        return codes


def key_ranks(columns: Sequence[Column]) -> tuple[KeyRanks, Ints]:
    """The distinct key tuples of ``columns`` (no nulls) and each row's rank among them."""
    values: list[pa.Array] = []
    folds: list[Ints] = []
    codes: Ints | None = None
    for column in columns:
        distinct = pc.unique(column)
        distinct = distinct.take(pc.sort_indices(distinct))
        part = _rank(column, distinct)
        if codes is None:
            codes = part
        else:
            fold, inverse = np.unique(codes * len(distinct) + part, return_inverse=True)
            folds.append(fold.astype(np.int64))
            codes = inverse.astype(np.int64).reshape(-1)
        values.append(distinct)
    if codes is None:
        raise ValueError("no key columns")
    return KeyRanks(tuple(values), tuple(folds)), codes


@dataclass(frozen=True)
class _Column:
    """One feature column in source row order, ready to gather with numpy."""

    type: pa.DataType
    values: np.ndarray[Any, Any]  # the values, or dictionary indices for strings
    valid: np.ndarray[Any, np.dtype[np.bool_]] | None  # None: no nulls
    dictionary: pa.Array | None = None

    def take(self, rows: Ints, missing: np.ndarray[Any, np.dtype[np.bool_]]) -> pa.Array:
        mask = missing if self.valid is None else missing | ~self.valid[rows]
        taken = self.values[rows]
        if self.dictionary is not None:
            return self.dictionary.take(pa.array(taken, mask=mask))
        return pa.array(taken, mask=mask, type=self.type)


def _column(values: Column) -> _Column:
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    valid = None
    if array.null_count:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # Gathering small integer codes and decoding them is several times cheaper
        # than gathering variable-length strings, and nothing dearer when they are unique.
        encoded = pc.dictionary_encode(array)
        indices = np.asarray(encoded.indices.fill_null(0).to_numpy(), dtype=np.int32)
        return _Column(kind, indices, valid, encoded.dictionary)
    if valid is not None:
        array = array.fill_null(False if pa.types.is_boolean(kind) else 0)
    return _Column(kind, np.asarray(array.to_numpy(zero_copy_only=False)), valid)


@dataclass(frozen=True)
class Prepared:
    """A view's rows sorted for as-of lookups (see the module docstring)."""

    keys: KeyRanks
    codes: Ints  # key rank of each sorted row
    times: Ints  # event time (epoch µs) of each sorted row
    search: Ints  # codes * width + time offset, non-decreasing
    width: int
    base: int  # time offset = time - base (direct form)
    stamps: Ints | None  # distinct event times when offsets are ranks
    rows: Ints  # source row of each sorted row: feature columns stay in source order
    columns: dict[str, _Column]

    @property
    def has_ties(self) -> bool:
        """Whether two rows share keys and event time (the tie rule was not applied)."""
        return bool(len(self.search) > 1 and (self.search[1:] == self.search[:-1]).any())

    @property
    def nbytes(self) -> int:
        """Approximate memory held, for the cache's budget."""
        total = self.codes.nbytes + self.times.nbytes + self.search.nbytes + self.rows.nbytes
        for column in self.columns.values():
            total += column.values.nbytes + (column.valid.nbytes if column.valid is not None else 0)
            total += column.dictionary.nbytes if column.dictionary is not None else 0
        total += self.stamps.nbytes if self.stamps is not None else 0
        return total + sum(v.nbytes for v in self.keys.values)

    def _offsets(self, times: Ints) -> Ints:
        if self.stamps is None:
            # Before every row → 0, after every row → the last offset: same answers.
            return np.clip(times, self.base, self.base + self.width - 1) - self.base
        return np.searchsorted(self.stamps, times, side="right").astype(np.int64)

    def lookup(self, codes: Ints, times: Ints, ttl_us: int) -> Ints:
        """Sorted-row position of each entity row's as-of match, -1 when there is none.

        ``codes`` are ranks from ``self.keys.codes``; a match has the same key,
        the greatest event time ``<= times`` and, when ``ttl_us``, an age ``<= ttl_us``.
        """
        if not len(self.search):
            return np.full(len(codes), -1, dtype=np.int64)
        needles = np.where(codes >= 0, codes * self.width + self._offsets(times), -1)
        found = np.searchsorted(self.search, needles, side="right").astype(np.int64) - 1
        safe = np.maximum(found, 0)
        hit = (codes >= 0) & (found >= 0) & (self.codes[safe] == codes)
        if ttl_us:
            hit &= times - self.times[safe] <= ttl_us
        return np.where(hit, found, -1)

    def gather(self, positions: Ints, names: Sequence[str]) -> list[pa.Array]:
        """The named feature columns at ``positions`` (null where -1)."""
        missing = positions < 0
        if not len(self.search):
            return [pa.nulls(len(positions), self.columns[n].type) for n in names]
        rows = self.rows[np.where(missing, 0, positions)]
        return [self.columns[name].take(rows, missing) for name in names]


def prepare(table: pa.Table, keys: Sequence[str], features: Sequence[str]) -> Prepared:
    """Sort ``table`` (key columns, ``__fts`` epoch µs, features; no null keys or times).

    Rows with the same keys and event time keep their order and the last one
    wins a lookup; ``has_ties`` tells the caller to apply the tie rule first.
    """
    ranks, codes = key_ranks([table.column(k) for k in keys]) if table.num_rows else (None, None)
    times = np.asarray(table.column("__fts").to_numpy(), dtype=np.int64)
    if ranks is None or codes is None:
        empty = np.zeros(0, dtype=np.int64)
        none = KeyRanks(
            tuple(pa.array([], table.schema.field(k).type) for k in keys),
            tuple(empty for _ in keys[1:]),
        )
        columns = {f: _column(table.column(f)) for f in features}
        return Prepared(none, empty, empty, empty, 1, 0, None, empty, columns)
    low, high = int(times.min()), int(times.max())
    width, base, stamps = high - low + 2, low - 1, None
    offsets = times - base  # 1 .. width - 1; entity times map to 0 .. width - 2
    if ranks.size * width >= _SEARCH_LIMIT:
        # Many keys over a long time range: offsets become ranks among the distinct times.
        stamps = np.unique(times)
        width, base = len(stamps) + 1, 0
        offsets = np.searchsorted(stamps, times, side="right").astype(np.int64)
    search = codes * width + offsets
    order = np.argsort(search, kind="stable").astype(np.int64)
    search = search[order]
    # Features stay in source order and are reached through ``order``: sorting them
    # would cost a copy of every column for no faster gather (lookups hit rows at random).
    columns = {f: _column(table.column(f)) for f in features}
    # Codes and times follow from the sorted search values: cheaper than two more gathers.
    sorted_codes, sorted_offsets = np.divmod(search, width)
    sorted_times = sorted_offsets + base if stamps is None else stamps[sorted_offsets - 1]
    return Prepared(ranks, sorted_codes, sorted_times, search, width, base, stamps, order, columns)


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
            # Map the few distinct keys, then gather: cheaper than a hash lookup per row.
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
    shift = max(0, (int(times.max()) - low).bit_length() - time_bits)
    packed = (codes << (time_bits + row_bits)) | (((times - low) >> shift) << row_bits)
    packed |= np.arange(rows)
    packed.sort()
    order = packed & ((1 << row_bits) - 1)
    return EntityOrder(order, codes[order], times[order], distinct)


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


def positions(
    lookups: Sequence[Lookup],
    keys: dict[str, Column],
    times: Ints,
    threads: int | None = None,
    orders: dict[tuple[str, ...], EntityOrder] | None = None,
) -> list[Ints]:
    """Per lookup, each entity row's as-of position in the prepared rows (-1: none).

    Entity rows are searched in :func:`sort_all` order (``orders`` when the caller
    sorted them already); the positions come back in entity-row order. Views run
    on up to ``threads`` threads (numpy and Arrow release the GIL in sorts,
    searches and gathers).
    """
    if orders is None:
        orders = sort_all([lookup.keys for lookup in lookups], keys, times, threads)

    def one(lookup: Lookup) -> Ints:
        entity = orders[lookup.keys]
        codes = entity.source_codes(lookup.source, [keys[k] for k in lookup.keys])
        found = lookup.source.lookup(codes, entity.times, lookup.ttl_us)
        at = np.empty_like(found)
        at[entity.order] = found
        return at

    return parallel(one, lookups, threads)


def parallel(fn: Callable[[T], R], items: Sequence[T], threads: int | None) -> list[R]:
    """``[fn(item) for item in items]`` on up to ``threads`` threads (default: CPU count)."""
    workers = min(len(items), threads or os.cpu_count() or 1)
    if workers <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="keel-asof") as pool:
        return list(pool.map(fn, items))
