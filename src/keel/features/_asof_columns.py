"""Feature columns of a prepared source, stored in sorted-row order after a null row.

Every column is copied once in the source's sorted order, with a null row at
index 0, so that a lookup's positions (0: no match) index it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from keel.features._asof_keys import Bools, Column, Ints

Validity: TypeAlias = tuple[int, pa.Buffer | None]  # null count, bitmap


def _is_string(kind: pa.DataType) -> bool:
    """Whether ``kind`` is an Arrow string type."""
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


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
