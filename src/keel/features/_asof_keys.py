"""Key ranks for the as-of engine: join-key tuples as dense int64 codes.

Ranks are ranks in the *sorted* distinct values, so sorting rows by their key
ranks sorts them by key. Integer keys whose values span a small range (the
usual ids) are ranked with a direct-address table (a flag per value in the
range, then a running count) instead of a hash set: ``_dense_ranks`` and
``_dense_rank``; other keys use Arrow's ``unique``/``index_in``. Both give
the same ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Bools", "Column", "Ints", "KeyRanks", "key_ranks"]

Ints: TypeAlias = np.ndarray[Any, np.dtype[np.int64]]
Bools: TypeAlias = np.ndarray[Any, np.dtype[np.bool_]]
Column: TypeAlias = pa.Array | pa.ChunkedArray

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: An integer key column is ranked through a direct-address table when its values
#: span at most this many slots per row (plus ``_DENSE_SLACK``): the table then costs
#: no more memory than the column, and building it less time than hashing.
_DENSE_PER_ROW = 2
_DENSE_SLACK = 1 << 16


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
