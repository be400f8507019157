"""Ground-truth labels that arrive later, joined to the predictions they judge.

Feedback is stored next to the prediction log as Parquet segments under
``<log root>/../feedback/date=YYYY-MM-DD/`` (one fsynced, atomically renamed
segment per accepted batch, so an acknowledged batch survives ``kill -9``).
A label names its prediction by ``request_id``, or by ``entity_key`` plus the
time the outcome happened (``event_time``): it is then joined to the latest
prediction for that entity at or before that time (an ASOF join).

Rules
-----
- A batch is validated as a whole: a malformed item (no key, a label that is
  not a number/string/bool) rejects the batch naming ``items[i].field``, and
  nothing is written.
- Sending the same label for the same key again is idempotent: it is counted
  as a duplicate and not stored twice. A *different* label for the same key
  is a correction: both are kept (the history), the newest is used.
- A request id that matches no logged prediction is counted and reported
  (``unknown``), never an error: its prediction may still be in the log
  writer's buffer, and the label joins as soon as the prediction lands.
- Label delay = time the label was received − time of the prediction.
- An item may carry ``signal`` (+ ``value``) and ``model`` instead of ``label``
  (R-TRN-23): the label is derived with the model's mapping (:mod:`keel.monitoring.signals`)
  and stored with the signal and ``source = implicit``; an unknown signal rejects the batch
  naming ``items[i].signal``. When a prediction has both, an explicit label wins over an
  implicit one whatever their order; among labels of one source the newest wins.

Duplicates and unknown ids are found in an index (:mod:`keel.monitoring._feedback_index`)
kept up to date from the segments, so a submission costs about its own size, not the size
of the history (#15.27); concurrent submissions, from several processes too, take turns.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from keel.errors import InvalidInput
from keel.monitoring._feedback_index import FeedbackIndex, keyed_label, label_key, request_key
from keel.monitoring.signals import SignalMap, implicit_label
from keel.serving.predlog import write_segment
from keel.serving.predquery import parse_time, query_log

__all__ = ["FEEDBACK_SCHEMA", "FeedbackResult", "FeedbackStore"]

FEEDBACK_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("entity_key", pa.string()),
        ("event_ts", pa.timestamp("ms", tz="UTC")),
        ("label", pa.string()),  # JSON text of the label: 1, 0.5, "churned", true
        ("label_value", pa.float64()),  # the label as a number when it is one
        ("model", pa.string()),
        ("received_ts", pa.timestamp("ms", tz="UTC")),
    ]
)
#: What a segment is written with: R-TRN-23's ``source``, "explicit" (a label was sent) or
#: "implicit" (derived from ``signal`` and ``signal_value`` with the model's mapping,
#: keel.monitoring.signals). Readers take segments without them as explicit labels.
_WRITE_SCHEMA = pa.schema(
    [
        *FEEDBACK_SCHEMA,
        ("source", pa.string()),
        ("signal", pa.string()),
        ("signal_value", pa.float64()),
    ]
)
MAX_ITEMS = 100_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


@dataclass(frozen=True)
class FeedbackResult:
    """What happened to a submitted batch."""

    accepted: int
    duplicates: int
    unknown: int
    unknown_examples: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Item:
    request_id: str | None
    entity_key: str | None
    event_ts: dt.datetime | None
    label: str
    label_value: float | None
    model: str | None
    source: str = "explicit"
    signal: str | None = None
    signal_value: float | None = None


#: A model's signal mapping, or None when it has none (keel.monitoring.signals.get_signals).
SignalLookup = Callable[[str], SignalMap | None]


class FeedbackStore:
    """Append labels; read predictions joined with their latest label."""

    def __init__(self, root: Path, predictions_root: Path) -> None:
        self.root = root
        self.predictions_root = predictions_root
        self.index = FeedbackIndex(root, predictions_root)
        #: Set by keel.services: how an implicit signal's model mapping is found.
        self.signals: SignalLookup | None = None

    def submit(self, items: Sequence[Mapping[str, Any]]) -> FeedbackResult:
        """Validate and durably store a batch of labels (see the module rules).

        An empty batch stores nothing and is not an error: a daily label job with no new
        labels must not crash (#15.23).
        """
        if not items:
            return FeedbackResult(accepted=0, duplicates=0, unknown=0)
        if len(items) > MAX_ITEMS:
            raise InvalidInput(f"items: at most {MAX_ITEMS:,} per batch", field="items")
        maps: dict[str, SignalMap | None] = {}  # one registry read per model in the batch
        parsed = [_parse(i, item, self._lookup(maps)) for i, item in enumerate(items)]
        keys = [_key(item) for item in parsed]
        ids = {i.request_id for i in parsed if i.request_id is not None}
        # One index transaction: it reads only segments written since the last call, and
        # it holds the index's write lock, so concurrent submitters (other processes too)
        # never both store the same label. The segment is written before the commit: a
        # crash in between leaves a segment that the next catch-up indexes.
        with self.index.writing() as txn:
            known = txn.stored_labels(keys)
            fresh: list[_Item] = []
            fresh_keys: list[bytes] = []
            for item, key in zip(parsed, keys, strict=True):
                if key in known:
                    continue
                known.add(key)
                fresh.append(item)
                fresh_keys.append(key)
            logged = txn.logged_requests(request_key(i) for i in ids)
            unknown = {i for i in ids if request_key(i) not in logged}
            if fresh:
                txn.add_segment(self._write(fresh), fresh_keys)
        return FeedbackResult(
            accepted=len(fresh),
            duplicates=len(parsed) - len(fresh),
            unknown=len(unknown),
            unknown_examples=sorted(unknown)[:10],
        )

    def labelled(
        self,
        model: str | None = None,
        version: int | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        *,
        as_of: dt.datetime | int | str | None = None,
    ) -> pd.DataFrame:
        """Predictions in the window that have a label, with ``label``, ``label_value``
        and ``label_delay_s`` columns (the newest label per prediction).

        ``as_of`` counts only labels received by then (what was known at that time: a
        replay or a late investigation sees the labels a run saw); default: every label.
        """
        table = self.labelled_table(model, version, start, end, as_of=as_of)
        if table.num_rows == 0:
            return pd.DataFrame()
        frame: pd.DataFrame = table.to_pandas()
        return frame.sort_values("ts").reset_index(drop=True)

    def labelled_table(
        self,
        model: str | None = None,
        version: int | None = None,
        start: dt.datetime | int | str | None = None,
        end: dt.datetime | int | str | None = None,
        *,
        as_of: dt.datetime | int | str | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """:meth:`labelled` as an unordered Arrow table, in one DuckDB query over the
        prediction log's files (:func:`keel.serving.predquery.query_log`).

        ``columns``: only ``ts``, these logged columns, ``label_value`` and ``received_ts``
        (a trigger over a million labelled rows needs the outputs and scores, not every
        feature, the join keys or the label text)."""
        known_at = parse_time(as_of, "as_of")
        files = self._files()
        if not files:
            return pa.table({})
        read = None if columns is None else ["ts", "request_id", "entity_key", *columns]
        out = None if columns is None else ["ts", *columns, "label_value", "received_ts"]

        def run(con: duckdb.DuckDBPyConnection, source: str, params: dict[str, Any]) -> pa.Table:
            params = {**params, "fb": [str(f) for f in files]}
            received = "TRUE"
            if known_at is not None:
                received, params["as_of"] = "received_ts <= $as_of", known_at
            raw = "read_parquet($fb, union_by_name = true)"
            fb = f"(SELECT *, {_ranked(con, raw, params['fb'])} FROM {raw} WHERE {received})"
            # Labels keyed by entity and time are rare: without any, the ASOF branch (which
            # sorts the whole log by entity) is left out rather than run over nothing; the
            # count reads one column of the labels.
            count = f"SELECT count(*) FROM {fb} WHERE request_id IS NULL"
            ((entities,),) = con.execute(
                count, {k: params[k] for k in ("fb", "as_of") if k in params}
            ).fetchall()
            join = _JOIN_SQL if entities else _REQUEST_JOIN_SQL
            select = f"*, {_DELAY}" if out is None else ", ".join(dict.fromkeys(out))
            query = join.format(p=source, fb=fb, select=select)
            found: pa.Table = con.sql(query, params=params).to_arrow_table()
            return found

        table = query_log(run, model, version, start, end, root=self.predictions_root, columns=read)
        return pa.table({}) if table is None else table

    def labels(self) -> pd.DataFrame:
        """Every stored label (the whole history, corrections included), oldest first."""
        files = self._files()
        if not files:
            return pd.DataFrame(columns=FEEDBACK_SCHEMA.names)
        with duckdb.connect() as con:
            table: pa.Table = (
                con.read_parquet([str(f) for f in files], union_by_name=True)
                .order("received_ts")
                .to_arrow_table()
            )
        frame: pd.DataFrame = table.to_pandas()
        return frame

    def _lookup(self, maps: dict[str, SignalMap | None]) -> SignalLookup:
        def lookup(model: str) -> SignalMap | None:
            if model not in maps:
                maps[model] = None if self.signals is None else self.signals(model)
            return maps[model]

        return lookup

    # -- storage -------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.glob("date=*/*.parquet") if not p.name.startswith("."))

    def _write(self, items: list[_Item]) -> str:
        """Write one segment; its name relative to the root (``date=…/part-….parquet``)."""
        now = dt.datetime.now(dt.UTC)
        table = pa.table(
            {
                "request_id": [i.request_id for i in items],
                "entity_key": [i.entity_key for i in items],
                "event_ts": [i.event_ts for i in items],
                "label": [i.label for i in items],
                "label_value": [i.label_value for i in items],
                "model": [i.model for i in items],
                "received_ts": [now] * len(items),
                "source": [i.source for i in items],
                "signal": [i.signal for i in items],
                "signal_value": [i.signal_value for i in items],
            },
            schema=_WRITE_SCHEMA,
        )
        name = f"part-{int(time.time() * 1000)}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        day = f"date={now:%Y-%m-%d}"
        write_segment(table, self.root / day, name)
        return f"{day}/{name}"


def _ranked(con: duckdb.DuckDBPyConnection, raw: str, files: list[str]) -> str:
    """The label's rank (explicit labels above implicit ones, then newest first: R-TRN-23)
    and its source; segments written before signals existed hold explicit labels only."""
    described = con.execute(f"DESCRIBE SELECT * FROM {raw}", {"fb": files}).fetchall()
    names = {row[0] for row in described}
    if "source" not in names:
        return "epoch_ms(received_ts) + 100000000000000 AS _rank, 'explicit' AS label_source"
    source = "coalesce(source, 'explicit')"
    # epoch ms is ~1.8e12 today: 1e14 puts every explicit label above every implicit one
    return (
        f"epoch_ms(received_ts) + CASE WHEN {source} = 'implicit' THEN 0 "
        f"ELSE 100000000000000 END AS _rank, {source} AS label_source"
    )


# Labels by request id, explicit before implicit (R-TRN-23), newest first; labels by entity
# join the latest prediction for the entity at or before the outcome's time. A prediction
# matched by request id is not matched again by entity. arg_max_null: a newer label that is
# not a number (label_value NULL) must replace an older number, not be skipped as arg_max
# skips NULLs.
_BY_REQUEST = """
by_request AS (
    SELECT request_id, arg_max(label, _rank) AS label,
           arg_max_null(label_value, _rank) AS label_value,
           arg_max(received_ts, _rank) AS received_ts, arg_max(label_source, _rank) AS label_source
    FROM fb WHERE request_id IS NOT NULL GROUP BY request_id
)"""
_REQUEST_JOIN_SQL = f"""
WITH fb AS {{fb}}, {_BY_REQUEST}
SELECT {{select}} FROM (
    SELECT p.*, b.label, b.label_value, b.received_ts, b.label_source
    FROM {{p}} p JOIN by_request b USING (request_id)
)
"""
_JOIN_SQL = f"""
WITH fb AS {{fb}}, p AS {{p}},
{_BY_REQUEST},
by_entity AS (
    SELECT entity_key, event_ts, arg_max(label, _rank) AS label,
           arg_max_null(label_value, _rank) AS label_value,
           arg_max(received_ts, _rank) AS received_ts, arg_max(label_source, _rank) AS label_source
    FROM fb WHERE request_id IS NULL GROUP BY entity_key, event_ts
),
matched_request AS (
    SELECT p.*, b.label, b.label_value, b.received_ts, b.label_source
    FROM p JOIN by_request b USING (request_id)
),
matched_entity AS (
    SELECT p.*, e.label, e.label_value, e.received_ts, e.label_source
    FROM by_entity e ASOF JOIN p ON e.entity_key = p.entity_key AND e.event_ts >= p.ts
    WHERE p.request_id NOT IN (SELECT request_id FROM matched_request)
)
SELECT {{select}}
FROM (SELECT * FROM matched_request UNION ALL BY NAME SELECT * FROM matched_entity)
"""
_DELAY = "epoch_ms(received_ts) / 1000.0 - epoch_ms(ts) / 1000.0 AS label_delay_s"


def _parse(index: int, item: Mapping[str, Any], signals: SignalLookup) -> _Item:
    where = f"items[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidInput(f"{where}: expected an object", field=where)
    unknown = set(item) - {
        "request_id",
        "entity_key",
        "event_time",
        "label",
        "model",
        "signal",
        "value",
    }
    if unknown:
        raise InvalidInput(f"{where}: unknown fields {sorted(unknown)}", field=where)
    request_id, entity_key = item.get("request_id"), item.get("entity_key")
    for name, value in (("request_id", request_id), ("entity_key", entity_key)):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 256):
            raise InvalidInput(
                f"{where}.{name}: must be a 1-256 character string", field=f"{where}.{name}"
            )
    event_ts = parse_time(item.get("event_time"), f"{where}.event_time")
    if request_id is None and (entity_key is None or event_ts is None):
        raise InvalidInput(f"{where}: give request_id, or entity_key with event_time", field=where)
    model = item.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidInput(f"{where}.model: must be a string", field=f"{where}.model")
    if "signal" in item:
        label, number = implicit_label(where, item, model, signals)
        value = float(label) if isinstance(label, bool | int | float) else None
        text = json.dumps(label)
        signal = str(item["signal"])
        return _Item(
            request_id, entity_key, event_ts, text, value, model, "implicit", signal, number
        )
    if "value" in item:
        raise InvalidInput(f"{where}.value: only with a signal", field=f"{where}.value")
    if "label" not in item:
        raise InvalidInput(f"{where}.label: required", field=f"{where}.label")
    label = item["label"]
    if isinstance(label, bool) or isinstance(label, str):
        value = float(label) if isinstance(label, bool) else None
    elif isinstance(label, int | float):
        if not math.isfinite(label):
            raise InvalidInput(f"{where}.label: must be finite", field=f"{where}.label")
        value = float(label)
    else:
        raise InvalidInput(
            f"{where}.label: must be a number, string or boolean, got {type(label).__name__}",
            field=f"{where}.label",
        )
    return _Item(request_id, entity_key, event_ts, json.dumps(label), value, model)


def _key(item: _Item) -> bytes:
    # The event time in the milliseconds the schema stores, floored as Arrow's cast does.
    event_ms = None if item.event_ts is None else (item.event_ts - _EPOCH) // _MS
    label = keyed_label(item.label, item.source, item.signal)
    return label_key(item.request_id, item.entity_key, event_ms, label)
