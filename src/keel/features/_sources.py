"""Prepared feature-view sources, read by ``offline.view_rows`` and remembered per version.

Reading, typing, de-duplicating and sorting a source costs far more than
looking entity rows up in it, and file sources rarely change between calls,
so a process keeps the prepared form of each file source keyed by the view's
definition and each file's (name, size, mtime, inode). Files modified in the
last ``offline.RACY_S`` seconds and SQL sources are read afresh every time.
The cache is least-recently-used and bounded by ``CACHE_BYTES``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keel.features import offline
from keel.features._asof import Prepared, parallel, prepare
from keel.features.models import Entity, FeatureView, FileSource
from keel.features.offline import connect, file_signature, join_keys, view_rows

__all__ = ["CACHE_BYTES", "clear_cache", "prepared_sources"]

#: Memory the process may hold in prepared sources (the usage view of the
#: benchmark, 1.8 M rows × 5 features, takes about 100 MB).
CACHE_BYTES = 1 << 30

_cache: OrderedDict[tuple[Any, ...], Prepared] = OrderedDict()
_held = 0
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every prepared source (the next retrieval reads the files again)."""
    global _held
    with _lock:
        _cache.clear()
        _held = 0
    offline.forget_tie_checks()


def _signature(view: FeatureView, entities: dict[str, Entity]) -> tuple[Any, ...] | None:
    source = view.source
    if not isinstance(source, FileSource):
        return None  # a SQL table can change at any time
    files = file_signature(source.path)
    if files is None:
        return None
    keys = tuple((k, str(t)) for k, t in join_keys(view, entities).items())
    return (json.dumps(view.model_dump(mode="json"), sort_keys=True), keys, files)


def _remember(signature: tuple[Any, ...], prepared: Prepared) -> None:
    global _held
    size = prepared.nbytes
    if size > CACHE_BYTES:
        return
    with _lock:
        if signature in _cache:
            return
        _cache[signature] = prepared
        _held += size
        while _held > CACHE_BYTES:
            _, dropped = _cache.popitem(last=False)
            _held -= dropped.nbytes


def prepared_sources(
    views: Sequence[FeatureView],
    entities: dict[str, Entity],
    *,
    memory_limit: str,
    temp_dir: Path,
    threads: int | None,
) -> list[Prepared]:
    """Each view's rows prepared for lookups (all its features), from the cache when current."""
    out: list[Prepared | None] = []
    missing: list[tuple[int, tuple[Any, ...] | None]] = []
    for i, view in enumerate(views):
        signature = _signature(view, entities)
        with _lock:
            hit = _cache.get(signature) if signature is not None else None
            if hit is not None:
                _cache.move_to_end(signature)  # type: ignore[arg-type]
        out.append(hit)
        if hit is None:
            missing.append((i, signature))

    def load(item: tuple[int, tuple[Any, ...] | None]) -> None:
        i, signature = item
        view = views[i]
        keys, names = list(join_keys(view, entities)), [f.name for f in view.features]
        con = connect(memory_limit, temp_dir, threads)
        try:
            prepared = prepare(view_rows(con, view, entities, resolve_ties=False), keys, names)
            if prepared.has_ties:
                # Rare: read again with the tie rule (created time, then source order).
                prepared = prepare(view_rows(con, view, entities, resolve_ties=True), keys, names)
        finally:
            con.close()
        out[i] = prepared
        if signature is not None:
            _remember(signature, prepared)

    # One connection per view, views side by side: one view's numpy sort overlaps
    # the next one's Parquet scan.
    parallel(load, missing, threads)
    return [p for p in out if p is not None]
