"""Files of the prediction log: layout, segment schema, records → Arrow, atomic writes.

Value conversion for the columns (types kept per column, widened when needed) is in
:mod:`keel.serving._logcolumns`.

See :mod:`keel.serving.predlog` for the design; this module is its file-level half.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from keel.serving._logcolumns import _floats, _Lazy, _probabilities, _text, _typed
from keel.serving.records import PredictionRecord, ServedRequest

if TYPE_CHECKING:
    from keel.config import Settings

__all__ = [
    "BASE_SCHEMA",
    "FEATURE_PREFIX",
    "SIGNATURE_TYPES",
    "iter_partitions",
    "log_root",
    "partition_dir",
    "records_to_table",
    "served_to_table",
    "write_segment",
]

FEATURE_PREFIX = "f_"
FORMAT_VERSION = "1"
BASE_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ms", tz="UTC")),
        ("request_id", pa.string()),
        ("deployment", pa.string()),
        ("arm", pa.string()),
        ("entity_key", pa.string()),
        ("probabilities", pa.list_(pa.float64())),
        ("latency_ms", pa.float64()),
        ("cached", pa.bool_()),
        ("fallback", pa.bool_()),
        ("extra", pa.string()),
        # R-TRN-24 (keel.serving.exploration): null unless the model has a policy; files
        # written before these existed read as null (union_by_name)
        ("explore", pa.bool_()),
        ("propensity", pa.float64()),
    ]
)
# Signature column types (keel.registry.signature) → Arrow types of the f_ columns.
SIGNATURE_TYPES: dict[str, pa.DataType] = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "category": pa.string(),
    "datetime": pa.timestamp("us"),
    "binary": pa.binary(),
}


def log_root(settings: Settings) -> Path:
    """The prediction log's directory: ``prediction_log_dir`` or ``<artifact_root>/predictions``."""
    configured = settings.prediction_log_dir
    return (configured or settings.resolved_artifact_root / "predictions").expanduser()


def partition_dir(root: Path, model: str, version: int, at_ms: int) -> Path:
    """The hour partition a prediction of ``model`` v``version`` at ``at_ms`` belongs to."""
    moment = dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC)
    return (
        root
        / f"model={quote(model, safe='')}"
        / f"version={int(version)}"
        / f"date={moment:%Y-%m-%d}"
        / f"hour={moment:%H}"
    )


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_segment(table: pa.Table, directory: Path, name: str, *, fsync: bool = True) -> Path:
    """Write ``table`` as ``directory/name`` atomically (temporary file, fsync, rename).

    A concurrent reader sees either no file or the whole file; the temporary file starts
    with a dot and ends in ``.tmp``, so ``*.parquet`` listings skip it.
    """
    missing = [p for p in (directory, *directory.parents) if not p.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as stream:
            pq.write_table(table, stream, compression="zstd")
            stream.flush()
            if fsync:
                os.fsync(stream.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        # The rename is durable once the directory is; new directories need their parents.
        for path in [directory, *(p.parent for p in missing)]:
            _fsync_dir(path)
    return final


def records_to_table(
    model: str, version: int, records: list[PredictionRecord], schema: dict[str, pa.DataType]
) -> pa.Table:
    """One segment's table; ``schema`` (feature → Arrow type) is read and widened in place."""
    base = _Base(
        at_ms=[r.at_ms for r in records],
        request_id=[r.request_id for r in records],
        deployment=[r.deployment for r in records],
        arm=[r.arm for r in records],
        entity_key=[r.entity_key for r in records],
        output=[r.output for r in records],
        probabilities=[r.probabilities for r in records],
        latency_ms=[r.latency_ms for r in records],
        cached=[bool(r.cached) for r in records],
        fallback=[bool(r.fallback) for r in records],
        extra=[json.dumps(r.extra, default=str) if r.extra else None for r in records],
        explore=[r.explore for r in records],
        propensity=[r.propensity for r in records],
    )
    rows = [r.features if type(r.features) is dict else _features(r) for r in records]
    try:
        # One pass in C++ over every row infers all feature columns at once (keys unioned,
        # int and float unified); a column with mixed kinds makes it fail, then per column.
        struct = pa.array(rows)
        inferred = {
            struct.type.field(i).name: struct.field(i) for i in range(struct.type.num_fields)
        }
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        inferred = {str(k): None for row in rows for k in row}
    features = {
        name: (_Lazy(lambda key=name: [row.get(key) for row in rows]), guess)  # type: ignore[misc]
        for name, guess in inferred.items()
    }
    return _table(model, version, base, features, schema)


def served_to_table(
    model: str, version: int, served: list[ServedRequest], schema: dict[str, pa.DataType]
) -> pa.Table:
    """One segment's table from whole requests whose rows share one ``columns`` layout.

    The rows are already tuples in column order, so each feature column is one slice
    of their transposition: no per-row dict, no inference over dicts. ``schema`` as in
    :func:`records_to_table`; the tables the two build are the same for the same rows.
    """
    # attrgetter, map and chain keep the per-row work in C: at thousands of rows a
    # second, Python-level loops here cost the serving process as much as the request.
    counts = list(map(len, map(attrgetter("outputs"), served)))
    total = sum(counts)
    one_row_each = len(counts) == total

    def each(attribute: str) -> list[Any]:  # one value per request → one per row
        values = map(attrgetter(attribute), served)
        return list(values if one_row_each else chain.from_iterable(map(repeat, values, counts)))

    def per_row(attribute: str) -> list[Any]:  # a sequence per request, or None
        values = list(map(attrgetter(attribute), served))
        absent = values.count(None)
        if absent == len(values):
            return [None] * total
        if not absent:  # every request has its sequence: joined in C
            return list(chain.from_iterable(values))
        return list(
            chain.from_iterable(
                repeat(None, n) if v is None else v for v, n in zip(values, counts, strict=True)
            )
        )

    rows_of = list(map(attrgetter("rows"), served))
    base = _Base(
        at_ms=each("at_ms"),
        request_id=each("request_id"),
        deployment=each("deployment"),
        arm=each("arm"),
        entity_key=per_row("entity_keys"),
        output=list(chain.from_iterable(map(attrgetter("outputs"), served))),
        probabilities=per_row("probabilities"),
        latency_ms=each("latency_ms"),
        cached=list(map(bool, chain.from_iterable(map(attrgetter("hits"), served)))),
        fallback=list(map(bool, each("fallback"))),
        extra=each("extra"),
        # set together, on the requests of a model with a policy only: one pass tells
        **_exploration(served, per_row),
    )
    columns = served[0].columns if served else ()
    shared = _shared_rows(rows_of, counts)
    if shared is None:
        rows = list(chain.from_iterable(rows_of))
        positions = None
    else:
        rows, positions = shared
    transposed = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    features = {
        str(name): (_Lazy(lambda values=values: list(values)), None)  # type: ignore[misc]
        for name, values in zip(columns, transposed, strict=True)
    }
    return _table(model, version, base, features, schema, positions)


def _shared_rows(
    rows_of: list[Sequence[tuple[Any, ...]]], counts: list[int]
) -> tuple[list[tuple[Any, ...]], pa.Array] | None:
    """The distinct rows of requests that share row objects, and each row's position among
    them; None when fewer than half the requests repeat another's rows.

    A repeated request body is parsed once (the gateway's parse memo), so every request
    of a hot key refers to the same rows object: its feature values are converted to
    Arrow once and gathered with one ``take``, instead of once per request. Under a
    cache-hit load this conversion held the GIL for milliseconds at a time in the
    serving process (it showed as a 10+ ms p99 at a 0.6 ms p50). Identity, not
    equality: the check stays in C (``map``, ``dict``) and costs nothing when it fails.
    """
    ids = list(map(id, rows_of))
    last = dict(zip(ids, range(len(ids)), strict=True))  # distinct rows → a request using them
    if len(last) * 2 > len(ids):
        return None
    slot = {key: n for n, key in enumerate(last)}
    distinct = [rows_of[i] for i in last.values()]
    starts = np.cumsum([0, *map(len, distinct)])[:-1]
    which = np.fromiter(map(slot.__getitem__, ids), dtype=np.int64, count=len(ids))
    sizes = np.asarray(counts, dtype=np.int64)
    first = starts[which]
    if sizes.size and (sizes == 1).all():
        positions = first
    else:  # several rows per request: its rows follow its distinct set's start
        before = np.cumsum(sizes) - sizes
        positions = np.repeat(first - before, sizes) + np.arange(int(sizes.sum()))
    return list(chain.from_iterable(distinct)), pa.array(positions, pa.int64())


@dataclass(slots=True)
class _Base:
    """The fixed columns of a segment, one Python value per row."""

    at_ms: list[int]
    request_id: list[Any]
    deployment: list[Any]
    arm: list[Any]
    entity_key: list[Any]
    output: list[Any]
    probabilities: list[Any]
    latency_ms: list[Any]
    cached: list[bool]
    fallback: list[bool]
    extra: list[str | None]
    explore: list[bool | None] | None  # None: no row has a value (the model explores nothing)
    propensity: list[float | None] | None


def _exploration(
    served: list[ServedRequest], per_row: Callable[[str], list[Any]]
) -> dict[str, list[Any] | None]:
    """The ``explore`` and ``propensity`` values per row, or None when no request has them."""
    if list(map(attrgetter("explore"), served)).count(None) == len(served):
        return {"explore": None, "propensity": None}
    return {"explore": per_row("explore"), "propensity": per_row("propensity")}


def _nullable(values: list[Any] | None, kind: pa.DataType, n: int) -> pa.Array:
    return pa.nulls(n, kind) if values is None else pa.array(values, kind)


def _table(
    model: str,
    version: int,
    base: _Base,
    features: Mapping[str, tuple[_Lazy, pa.Array | None]],
    schema: dict[str, pa.DataType],
    positions: pa.Array | None = None,
) -> pa.Table:
    """The segment table; feature values are gathered by ``positions`` when given."""
    columns: dict[str, pa.Array] = {
        "ts": pa.array(base.at_ms, pa.int64()).cast(BASE_SCHEMA.field("ts").type),
        "request_id": _text(base.request_id),
        "deployment": _text(base.deployment),
        "arm": _text(base.arm),
        "entity_key": _text(base.entity_key),
        "output": _typed(schema, "\0output", _Lazy(lambda: base.output)),
        "probabilities": _probabilities(base.probabilities),
        "latency_ms": _floats(base.latency_ms),
        "cached": pa.array(base.cached, pa.bool_()),
        "fallback": pa.array(base.fallback, pa.bool_()),
        "extra": _text(base.extra),
        "explore": _nullable(base.explore, pa.bool_(), len(base.at_ms)),
        "propensity": _nullable(base.propensity, pa.float64(), len(base.at_ms)),
    }
    for name, (values, guess) in features.items():
        column = _typed(schema, name, values, guess)
        columns[FEATURE_PREFIX + name] = column if positions is None else column.take(positions)
    metadata = {
        "keel.model": model,
        "keel.version": str(version),
        "keel.format": FORMAT_VERSION,
    }
    return pa.table(columns).replace_schema_metadata(metadata)


def _features(record: PredictionRecord) -> Mapping[str, Any]:
    return record.features if isinstance(record.features, Mapping) else {}


def iter_partitions(root: Path) -> Iterable[Path]:
    """Every hour partition directory under ``root``."""
    return sorted(root.glob("model=*/version=*/date=*/hour=*"))
