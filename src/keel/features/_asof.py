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
    "fetch",
    "fetch_view",
    "key_ranks",
    "parallel",
    "positions",
    "prepare",
    "sort_all",
    "sort_entities",
]

Ints: TypeAlias = np.ndarray[Any, np.dtype[np.int64]]
Bools: TypeAlias = np.ndarray[Any, np.dtype[np.bool_]]
Column: TypeAlias = pa.Array | pa.ChunkedArray
Reader: TypeAlias = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]
Validity: TypeAlias = tuple[int, pa.Buffer | None]  # null count, bitmap

T = TypeVar("T")
R = TypeVar("R")

#: Search values must stay below this; past it times are replaced by their rank.
_SEARCH_LIMIT = 2**62
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: An integer key column is ranked through a direct-address table when its values
#: span at most this many slots per row (plus ``_DENSE_SLACK``): the table then costs
#: no more memory than the column, and building it less time than hashing.
_DENSE_PER_ROW = 2
_DENSE_SLACK = 1 << 16
#: The bucket index over search values has about this many buckets per source row,
#: and a needle steps back at most ``_STEPS - 1`` rows before binary search takes over.
_BUCKETS_PER_ROW = 1
_STEPS = 3
#: A view whose columns are at most this large (8 bytes a row) is read in entity-row
#: order: random reads, but within a cache-sized array they cost less than a scatter.
_CACHED_BYTES = 4 << 20


def _ints(column: Column) -> Ints:
    """An integer Arrow column without nulls as int64 numpy (one copy at most)."""
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _dense_ok(column: Column, distinct: pa.Array | None = None) -> bool:
    """Whether ``column`` (and ``distinct``) are signed integers without nulls."""
    kinds = [column.type] if distinct is None else [column.type, distinct.type]
    return all(pa.types.is_signed_integer(k) for k in kinds) and not column.null_count


def _dense_ranks(values: Ints) -> tuple[Ints, Ints] | None:
    """Sorted distinct values and each value's rank, by direct addressing; None if too sparse."""
    if not len(values):
        return None
    low, high = int(values.min()), int(values.max())
    limit = _DENSE_PER_ROW * len(values) + _DENSE_SLACK
    if high - low + 1 > limit:
        return None
    # Ids from 0 (the usual case) index the table as they are: no shifted copy.
    origin = 0 if 0 <= low and high < limit else low
    at = values if origin == 0 else values - origin  # no overflow: the span is small
    seen = np.zeros(high - origin + 1, dtype=bool)
    seen[at] = True
    rank = np.cumsum(seen, dtype=np.int64)
    rank -= 1
    return np.flatnonzero(seen) + origin, rank[at]


def _dense_rank(values: Ints, distinct: Ints) -> Ints | None:
    """Index of each value in sorted ``distinct`` (-1: absent) by direct addressing, or None."""
    if not len(distinct):
        return np.full(len(values), -1, dtype=np.int64)
    low, high = int(distinct[0]), int(distinct[-1])
    span = high - low + 1
    too_wide = span > _DENSE_PER_ROW * (len(values) + len(distinct)) + _DENSE_SLACK
    if too_wide or low == _INT64_MIN or high == _INT64_MAX:
        return None
    # Slot 0 catches every value below ``low``, the last slot every value above ``high``.
    table = np.full(span + 2, -1, dtype=np.int64)
    table[distinct - (low - 1)] = np.arange(len(distinct), dtype=np.int64)
    at = np.clip(values, low - 1, high + 1)
    at -= low - 1
    return table[at]


def _rank(column: Column, distinct: pa.Array) -> Ints:
    """Index of each value in sorted ``distinct`` (-1 when absent)."""
    if _dense_ok(column, distinct):
        ranked = _dense_rank(_ints(column), _ints(distinct))
        if ranked is not None:
            return ranked
    found = pc.index_in(column, value_set=distinct)
    return np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)


def _distinct(column: Column) -> tuple[pa.Array, Ints]:
    """Sorted distinct values of ``column`` (no nulls) and each row's rank among them."""
    if _dense_ok(column):
        dense = _dense_ranks(_ints(column))
        if dense is not None:
            values, codes = dense
            return pa.array(values, type=column.type), codes
    distinct = pc.unique(column)
    distinct = distinct.take(pc.sort_indices(distinct))
    return distinct, _rank(column, distinct)


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
        distinct, part = _distinct(column)
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


def _is_string(kind: pa.DataType) -> bool:
    """Whether ``kind`` is an Arrow string type."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


@dataclass(frozen=True)
class _Column:
    """One feature column in sorted-row order after a null row at index 0.

    ``values`` holds the values (bools as one byte each), or dictionary indices
    for strings; ``valid`` is None when no row is null (row 0 is null anyway).
    """

    type: pa.DataType
    values: np.ndarray[Any, Any]
    valid: Bools | None
    dictionary: pa.Array | None = None

    def array(self, values: np.ndarray[Any, Any], valid: Validity) -> pa.Array:
        """An Arrow array of this column's type from gathered ``values`` and validity."""
        nulls, bitmap = valid
        buffers = [bitmap, pa.py_buffer(values)]
        if self.dictionary is not None:
            indices = pa.Array.from_buffers(pa.int32(), len(values), buffers, null_count=nulls)
            return self.dictionary.take(indices)
        if pa.types.is_boolean(self.type):
            buffers[1] = pa.py_buffer(np.packbits(values, bitorder="little"))
        return pa.Array.from_buffers(self.type, len(values), buffers, null_count=nulls)

    @property
    def nbytes(self) -> int:
        """Memory held by the column."""
        total = self.values.nbytes + (self.valid.nbytes if self.valid is not None else 0)
        return total + (self.dictionary.nbytes if self.dictionary is not None else 0)


def _validity(valid: Bools) -> Validity:
    """How many rows are null, and the Arrow validity bitmap (None when none is)."""
    nulls = len(valid) - int(np.count_nonzero(valid))
    return nulls, pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None


def _sorted_copy(values: np.ndarray[Any, Any], order: Ints, fill: Any) -> np.ndarray[Any, Any]:
    """``values[order]`` after one leading ``fill`` (the null row)."""
    out = np.empty(len(order) + 1, dtype=values.dtype)
    out[0] = fill
    np.take(values, order, out=out[1:])
    return out


def _encoded(values: pa.ChunkedArray) -> pa.DictionaryArray:
    """A string column as one dictionary array (one dictionary for all chunks)."""
    if pa.types.is_dictionary(values.type):
        return values.unify_dictionaries().combine_chunks()
    # Gathering small integer codes and decoding them is several times cheaper
    # than gathering variable-length strings, and nothing dearer when they are unique.
    return pc.dictionary_encode(values.combine_chunks())


def _column(values: Column, order: Ints) -> _Column:
    """A feature column sorted by ``order``, for :class:`Prepared`.

    Strings may come dictionary-encoded (the Parquet reader keeps the file's
    dictionaries): the column then has the dictionary's value type.
    """
    chunked = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    valid = None
    if chunked.null_count:
        flags = np.asarray(chunked.is_valid().to_numpy(), dtype=bool)
        valid = _sorted_copy(flags, order, False)
    if pa.types.is_dictionary(chunked.type) or _is_string(chunked.type):
        encoded = _encoded(chunked)
        indices = np.asarray(encoded.indices.fill_null(0).to_numpy(), dtype=np.int32)
        kind = encoded.type.value_type
        return _Column(kind, _sorted_copy(indices, order, 0), valid, encoded.dictionary)
    kind = chunked.type
    if chunked.null_count:
        chunked = chunked.fill_null(False if pa.types.is_boolean(kind) else 0)
    raw = np.asarray(chunked.to_numpy())
    return _Column(kind, _sorted_copy(raw, order, raw.dtype.type(0)), valid)


@dataclass(frozen=True)
class _Buckets:
    """A direct-address index over sorted search values: ``np.searchsorted`` in a few passes.

    Values split into ``2**shift``-wide buckets from ``low``; ``ends[b + 1]`` is
    the position of the last value in bucket ``b`` or a lower one (``ends[0] =
    0``: the sentinel). A needle starts at the end of its bucket and steps back
    over the values of its bucket above it: with about one value per bucket
    that takes a step or two, where a binary search takes twenty dependent,
    mispredicted probes. Needles still above after ``_STEPS`` reads (crowded
    buckets) fall back to the binary search, so skewed values cost time, never
    correctness.
    """

    low: int
    high: int
    shift: int
    ends: Ints

    @classmethod
    def build(cls, search: Ints, scratch: Ints) -> _Buckets:
        """The index of ``search`` (a sentinel, then at least one non-decreasing value).

        ``scratch`` (as long as the values, overwritten) saves allocating a temporary.
        """
        values = search[1:]
        low, high = int(values[0]), int(values[-1])
        shift = ((high - low) // (len(values) * _BUCKETS_PER_ROW)).bit_length()
        count = ((high - low) >> shift) + 1
        # Bucket + 1 (measured from one bucket below ``low``): slot 0 stays empty, and
        # the running count of the counts is ``ends`` in place.
        buckets = np.subtract(values, low - (1 << shift), out=scratch)
        buckets >>= shift
        ends = np.bincount(buckets, minlength=count + 1).astype(np.int64, copy=False)
        return cls(low, high, shift, np.cumsum(ends, out=ends))

    @property
    def nbytes(self) -> int:
        """Memory held by the index."""
        return int(self.ends.nbytes)

    def floor(self, search: Ints, needles: Ints) -> tuple[Ints, Ints]:
        """For each needle, the last position in ``search`` whose value is ``<=`` it, and
        that value (position 0, the sentinel, when no row's is)."""
        # Bucket + 1, as in ``build``: below ``low`` → ends[0] = 0; above ``high`` → the last.
        values = np.clip(needles, self.low - (1 << self.shift), self.high)
        values -= self.low - (1 << self.shift)
        values >>= self.shift
        found = np.take(self.ends, values)
        for step in range(_STEPS):
            above = np.take(search, found, out=values) > needles
            if step < _STEPS - 1:
                found -= above
        crowded = np.flatnonzero(above)
        if len(crowded):
            found[crowded] = np.searchsorted(search, needles[crowded], side="right") - 1
            values[crowded] = search[found[crowded]]
        return found, values


@dataclass(frozen=True)
class Prepared:
    """A view's rows sorted for as-of lookups (see the module docstring)."""

    keys: KeyRanks
    search: Ints  # sentinel, then codes * width + time offset, non-decreasing
    width: int
    base: int  # time offset = time - base (direct form)
    stamps: Ints | None  # distinct event times when offsets are ranks
    columns: dict[str, _Column]  # sorted-row order after a null row
    buckets: _Buckets | None  # None: no rows

    @property
    def rows(self) -> int:
        """How many source rows there are."""
        return len(self.search) - 1

    @property
    def has_ties(self) -> bool:
        """Whether two rows share keys and event time (the tie rule was not applied)."""
        search = self.search[1:]
        return bool(len(search) > 1 and (search[1:] == search[:-1]).any())

    @property
    def nbytes(self) -> int:
        """Approximate memory held, for the cache's budget."""
        total = self.search.nbytes + sum(c.nbytes for c in self.columns.values())
        total += self.buckets.nbytes if self.buckets is not None else 0
        total += self.stamps.nbytes if self.stamps is not None else 0
        return total + sum(v.nbytes for v in self.keys.values)

    def _offsets(self, times: Ints) -> Ints:
        """Each entity time's offset: rows at offsets ``<=`` it are at or before it."""
        if self.stamps is None:
            # Before every row → 0, after every row → the last offset: same answers.
            offsets = np.clip(times, self.base, self.base + self.width - 1)
            offsets -= self.base
            return offsets
        return np.searchsorted(self.stamps, times, side="right").astype(np.int64)

    def _lowest(self, times: Ints, ttl_us: int, out: Ints) -> Ints:
        """Each entity time's lowest matching offset under a TTL (``width``: none can match).

        A row at ``base + o`` is young enough when ``o >= time - ttl - base``;
        computed with clipped bounds so that no int64 wraps for any input.
        Written to ``out`` (the direct form) or a new array (the rank form).
        """
        if self.stamps is not None:
            if ttl_us > _INT64_MAX:
                return np.ones(len(times), dtype=np.int64)  # older than any int64 time
            # Rows at rank r (offset r + 1) are young enough when stamps[r] >= time - ttl.
            oldest = np.maximum(times, _INT64_MIN + ttl_us, out=out)
            oldest -= ttl_us
            return np.searchsorted(self.stamps, oldest, side="left").astype(np.int64) + 1
        shift = self.base + ttl_us  # offset = time - shift, kept within [1, width]
        low, high = shift + 1, shift + self.width
        if high <= _INT64_MIN:
            out.fill(self.width)
            return out
        if low > _INT64_MAX:
            out.fill(1)
            return out
        low, high = max(low, _INT64_MIN), min(high, _INT64_MAX)
        lowest = np.clip(times, low, high, out=out)
        lowest -= low  # 0 .. high - low, exact in int64
        lowest += low - shift  # a Python int in [1, width]
        return lowest

    def match(self, codes: Ints, times: Ints, ttl_us: int) -> Ints:
        """Each entity row's match as an index into ``search`` and the columns (0: none).

        ``codes`` are ranks from ``self.keys.codes`` (-1: unknown key), and are
        overwritten (scratch: one array fewer to allocate); a match has the same
        key, the greatest event time ``<= times`` and, when ``ttl_us``, an age
        ``<= ttl_us``. Fastest with rows sorted by (code, time).
        """
        if self.buckets is None:
            return np.zeros(len(codes), dtype=np.int64)
        start = np.multiply(codes, self.width, out=codes)  # where the key's values begin
        needles = self._offsets(times)
        needles += start  # unknown keys (-1) fall below every row: position 0
        found, value = self.buckets.floor(self.search, needles)
        if ttl_us:
            start += self._lowest(times, ttl_us, out=needles)
        # Without a TTL any row of the same key matches: rows of lower keys lie below start.
        found *= value >= start
        return found

    def lookup(self, codes: Ints, times: Ints, ttl_us: int) -> Ints:
        """Sorted-row position of each entity row's as-of match, -1 when there is none."""
        return self.match(codes.copy(), times, ttl_us) - 1

    def gather(self, positions: Ints, names: Sequence[str]) -> list[pa.Array]:
        """The named feature columns at sorted-row ``positions`` (null where -1)."""
        at = positions + 1
        hit = _validity(at > 0)
        out = []
        for name in names:
            column = self.columns[name]
            valid = hit if column.valid is None else _validity(np.take(column.valid, at))
            out.append(column.array(np.take(column.values, at), valid))
        return out


def _empty_keys(table: pa.Table, keys: Sequence[str]) -> KeyRanks:
    """The key ranks of a source without rows: no values, of the key columns' types."""
    empty = np.zeros(0, dtype=np.int64)
    return KeyRanks(
        tuple(pa.array([], table.schema.field(k).type) for k in keys),
        tuple(empty for _ in keys[1:]),
    )


def prepare(table: pa.Table, keys: Sequence[str], features: Sequence[str]) -> Prepared:
    """Sort ``table`` (key columns, ``__fts`` epoch µs, features; no null keys or times).

    Rows with the same keys and event time keep their order and the last one
    wins a lookup; ``has_ties`` tells the caller to apply the tie rule first.
    """
    if not table.num_rows:
        order = np.zeros(0, dtype=np.int64)
        columns = {f: _column(table.column(f), order) for f in features}
        sentinel = np.full(1, _INT64_MIN, dtype=np.int64)
        return Prepared(_empty_keys(table, keys), sentinel, 1, 0, None, columns, None)
    ranks, codes = key_ranks([table.column(k) for k in keys])
    times = _ints(table.column("__fts"))
    low, high = int(times.min()), int(times.max())
    width, base, stamps = high - low + 2, low - 1, None
    ranked = None
    if ranks.size * width >= _SEARCH_LIMIT:
        # Many keys over a long time range: offsets become ranks among the distinct times.
        stamps = np.unique(times)
        width, base = len(stamps) + 1, 0
        ranked = np.searchsorted(stamps, times, side="right")
    # The search values are built in the codes' buffer: one 8-byte array per row less.
    search = codes if codes.flags.writeable else codes.copy()
    search *= width
    if ranked is None:
        # + offset, times - base: 1 .. width - 1 (entity times map to 0 .. width - 1).
        # Should the sum wrap, the difference wraps back: int64 arithmetic is modular.
        search += times
        search -= base
    else:
        search += ranked
    order = np.argsort(search, kind="stable").astype(np.int64, copy=False)
    # Feature columns are copied in sorted order once here, so that every lookup
    # reads them in (nearly) increasing order instead of through a permutation.
    # (Not on threads of their own: views already load side by side, and more
    # threads touching fresh memory cost more CPU than they save time.)
    columns = {f: _column(table.column(f), order) for f in features}
    unsorted, search = search, _sorted_copy(search, order, _INT64_MIN)
    return Prepared(ranks, search, width, base, stamps, columns, _Buckets.build(search, unsorted))


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
