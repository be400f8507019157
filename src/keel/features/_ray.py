"""Point-in-time lookups as Ray tasks (``engine="ray"`` or ``KEEL_FEATURES_ENGINE=ray``).

The entity rows are split into chunks by a hash of their join keys, so every
row of one entity lands in the same chunk; each chunk is one Ray task running
the in-process engine (``_asof.positions``) against the prepared sources,
which travel once through Ray's object store. Tasks return only row positions
(8 bytes per row and view); the driver gathers the feature values, so the
answer is the in-process answer, in entity-row order.

``KEEL_RAY_ADDRESS`` names a running cluster (``ray.init(address=...)``);
without it a local Ray starts on this machine's cores (the one start-up,
:func:`keel.executors.ray_backend.connect_ray`). A Ray that this process
already initialised is used as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.executors.ray_backend import connect_ray
from keel.features._asof import Column, Ints, Lookup, positions

__all__ = ["CHUNK_ROWS", "chunk_ids", "ray_positions"]

#: Entity rows per task, about: big enough that task overhead (milliseconds) stays small.
CHUNK_ROWS = 250_000


def chunk_ids(keys: dict[str, Column], chunks: int) -> Ints:
    """The chunk (``0 .. chunks - 1``) of each entity row, from a hash of its join keys."""
    combined = np.zeros(len(next(iter(keys.values()))), dtype=np.uint64)
    for column in keys.values():
        values = column.to_numpy(zero_copy_only=False) if hasattr(column, "to_numpy") else column
        # hash_array is pandas' stable 64-bit hash; combined with a multiply-xor per column
        combined = combined * np.uint64(0x100000001B3) ^ pd.util.hash_array(np.asarray(values))
    return (combined % np.uint64(chunks)).astype(np.int64)


def _lookup_chunk(lookups: Sequence[Lookup], keys: dict[str, pa.Array], times: Ints) -> list[Ints]:
    # One CPU per task: the threads of ``positions`` would only compete with other tasks.
    return positions(lookups, keys, times, threads=1)


def ray_positions(
    lookups: Sequence[Lookup], keys: dict[str, Column], times: Ints, *, address: str | None = None
) -> list[Ints]:
    """What ``_asof.positions`` returns, computed by Ray tasks over key-hash chunks.

    ``address`` names a running Ray cluster (``KEEL_RAY_ADDRESS``); without one a local
    Ray is started on this machine's cores.
    """
    ray = connect_ray(address, needed_by="engine 'ray'", field="engine")
    rows = len(times)
    cpus = max(1, int(ray.available_resources().get("CPU", 1)))
    chunks = max(1, min(-(-rows // CHUNK_ROWS), 4 * cpus))
    ids = chunk_ids(keys, chunks)
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(chunks + 1))
    task = ray.remote(num_cpus=1)(_lookup_chunk)
    shared = ray.put(list(lookups))
    pending = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if start == end:
            continue
        rows_of = order[start:end]
        taken = pa.array(rows_of)
        part = {name: column.take(taken) for name, column in keys.items()}
        pending.append((rows_of, task.remote(shared, part, times[rows_of])))
    out = [np.full(rows, -1, dtype=np.int64) for _ in lookups]
    for rows_of, ref in pending:
        for at, found in zip(out, ray.get(ref), strict=True):
            at[rows_of] = found
    return out
