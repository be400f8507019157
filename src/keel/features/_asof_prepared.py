"""Prepared sources: a view's rows sorted once for as-of lookups (see ``_asof``).

Each row gets one int64 search value ``key rank * width + time offset``; a
lookup searches those values with the bucket index and reads the feature
columns at the matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from keel.features._asof_buckets import _Buckets
from keel.features._asof_columns import _Column, _column, _sorted_copy, _validity
from keel.features._asof_keys import _INT64_MAX, _INT64_MIN, Ints, KeyRanks, _ints, key_ranks

__all__ = ["Prepared", "prepare"]

#: Search values must stay below this; past it times are replaced by their rank.
_SEARCH_LIMIT = 2**62


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
        return int(total + sum(v.nbytes for v in self.keys.values))

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
