"""Check predict request bodies against a model signature, without pandas on the hot path.

A body is ``{"instances": [{col: value}, ...]}`` or ``{"columns": [...], "data": [[...]]}``,
optionally with ``"probabilities": true``, ``"entity_keys": [...]`` (one per row, used by
event-based cache invalidation) and ``"event_time"`` (when the predicted event happened, for
replays: :mod:`keel.serving._eventtime`). :class:`InputSpec` turns it into rows of plain Python
values in signature order, normalised (``1`` and ``1.0`` in a ``double`` column are the same
value), so that a row's canonical bytes are its prediction-cache key, and builds the typed
DataFrame a batch of such rows is predicted on.

Checking each value in Python costs a few microseconds per row, where building a pandas
frame per request and running :func:`keel.registry.signature.validate_frame` costs about a
millisecond; the frame is built once per micro-batch instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from keel.errors import InvalidInput
from keel.serving import _json
from keel.serving._eventtime import event_ms_of
from keel.serving._values import CHECKS, MISSING_OK, Bad, column_array

__all__ = ["MEMO_ENTRIES", "MEMO_MAX_BODY", "InputSpec", "ParsedInput"]

# routing_key: a deployment's sticky key (serving/deployroutes.py reads it); accepted and
# ignored on model routes, so one body serves both kinds of route.
_BODY_KEYS = frozenset(
    {"instances", "columns", "data", "probabilities", "entity_keys", "routing_key", "event_time"}
)
#: Parsed bodies remembered per model version (at most ~5 MB of bodies each).
MEMO_ENTRIES = 1024
MEMO_MAX_BODY = 4096


@dataclass(slots=True)
class ParsedInput:
    """A validated request: rows in signature order, their cache keys and the options."""

    rows: list[tuple[Any, ...]]
    keys: list[bytes]
    columns: list[str]
    probabilities: bool
    entity_keys: list[str | None] | None
    #: The body's ``event_time`` in epoch ms (None: the row is logged at its arrival).
    event_ms: int | None = None

    def features(self, index: int) -> dict[str, Any]:
        """Row ``index`` as a ``{column: value}`` dict (for the prediction log)."""
        return dict(zip(self.columns, self.rows[index], strict=True))


class InputSpec:
    """The input contract of one model version: its signature's columns, or anything.

    Without a signature, rows are accepted as given (the model decides) and the cache key is
    the row with sorted keys.
    """

    def __init__(self, signature: dict[str, Any] | None, *, max_rows: int = 10_000) -> None:
        inputs = (signature or {}).get("inputs") or None
        self.columns: list[str] | None = [c["name"] for c in inputs] if inputs else None
        self.kinds: list[str] = [c["type"] for c in inputs] if inputs else []
        self.nullable: list[bool] = [bool(c.get("nullable")) for c in inputs] if inputs else []
        # A float column takes NaN unless the model was found not to (``accepts_nan``).
        self.accepts_nan: list[bool] = [
            c["type"] in MISSING_OK and c.get("accepts_nan") is not False for c in inputs or ()
        ]
        #: The signature's output columns (checked on every model call), or None.
        self.outputs: list[dict[str, Any]] | None = (signature or {}).get("outputs") or None
        self._checks = [CHECKS[k] for k in self.kinds]
        self._names = frozenset(self.columns or ())
        self.max_rows = max_rows
        self._memo: dict[bytes, ParsedInput] = {}

    # ---- request bodies ------------------------------------------------------------------
    def parse(self, body: bytes | dict[str, Any], decoded: Any = None) -> ParsedInput:
        """Validate a request body; raises InvalidInput naming the field (and row).

        The result for a small body is remembered by its exact bytes: a client that sends
        the same request again (what makes prediction-cache hits) skips parsing and
        checking, which is most of a hit's cost. The answer depends on nothing but the
        bytes and this spec (one per loaded model version), so it cannot go stale; the
        gateway treats a :class:`ParsedInput` as read-only.

        ``decoded`` is ``body`` already decoded from JSON by the caller (a deployment route
        reads its ``routing_key`` first): then the body is not decoded again.
        """
        if type(body) is not bytes or len(body) > MEMO_MAX_BODY:
            return self._parse(body if decoded is None else decoded)
        parsed = self._memo.get(body)
        if parsed is None:
            parsed = self._parse(body if decoded is None else decoded)
            if len(self._memo) >= MEMO_ENTRIES:
                del self._memo[next(iter(self._memo))]  # the oldest (dicts keep order)
            self._memo[body] = parsed
        return parsed

    def _parse(self, body: bytes | dict[str, Any]) -> ParsedInput:
        records, probabilities, entity_keys, event_ms = self.envelope(body)
        return self.from_records(records, probabilities, entity_keys, event_ms)

    def envelope(
        self, body: bytes | dict[str, Any]
    ) -> tuple[list[dict[str, Any]], bool, list[str | None] | None, int | None]:
        """A body's instances (as dicts, values unchecked), its probabilities flag, entity
        keys and event time (epoch ms, or None).

        Checks everything but the values: the JSON shape, the body's keys, the row count,
        the ``entity_keys`` list and the ``event_time``; raises InvalidInput naming the
        field. The gateway uses it to add online features to the instances before
        :meth:`from_records`.
        """
        payload = _json.loads(body) if isinstance(body, bytes | bytearray) else body
        if not isinstance(payload, dict):
            raise InvalidInput(
                "the body must be a JSON object with 'instances' or 'columns' + 'data'",
                field="body",
            )
        unknown = sorted(set(payload) - _BODY_KEYS)
        if unknown:
            raise InvalidInput(
                f"unexpected field {unknown[0]!r}", field=unknown[0], expected=sorted(_BODY_KEYS)
            )
        probabilities = payload.get("probabilities", False)
        if not isinstance(probabilities, bool):
            raise InvalidInput("probabilities must be true or false", field="probabilities")
        records = self._records(payload)
        if not records:
            raise InvalidInput("no rows: send at least one instance", field="instances")
        if len(records) > self.max_rows:
            raise InvalidInput(
                f"{len(records)} rows exceed the limit of {self.max_rows} per request",
                field="instances",
                limit=self.max_rows,
            )
        entity_keys = self._entity_keys(payload.get("entity_keys"), len(records))
        return records, probabilities, entity_keys, event_ms_of(payload.get("event_time"))

    def from_records(
        self,
        records: list[dict[str, Any]],
        probabilities: bool,
        entity_keys: list[str | None] | None,
        event_ms: int | None = None,
    ) -> ParsedInput:
        """Check instances from :meth:`envelope` against the signature (never remembered)."""
        if self.columns is None:
            return self._free_rows(records, probabilities, entity_keys, event_ms)
        rows = [self.check_row(record, i) for i, record in enumerate(records)]
        keys = [_json.dumps(row) for row in rows]
        return ParsedInput(rows, keys, self.columns, probabilities, entity_keys, event_ms)

    @staticmethod
    def _records(payload: dict[str, Any]) -> list[Any]:
        if "instances" in payload:
            if "columns" in payload or "data" in payload:
                raise InvalidInput(
                    "send either 'instances' or 'columns' + 'data', not both", field="instances"
                )
            instances = payload["instances"]
            if not isinstance(instances, list):
                raise InvalidInput("instances must be a list of objects", field="instances")
            for i, row in enumerate(instances):
                if not isinstance(row, dict):
                    raise InvalidInput(
                        f"instance {i} is a {type(row).__name__}, not an object",
                        field="instances",
                        row=i,
                    )
            return instances
        columns, data = payload.get("columns"), payload.get("data")
        if columns is None and data is None:
            raise InvalidInput(
                "the body needs 'instances' or 'columns' + 'data'", field="instances"
            )
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidInput("columns must be a list of column names", field="columns")
        if len(set(columns)) != len(columns):
            raise InvalidInput("columns has duplicate names", field="columns")
        if not isinstance(data, list):
            raise InvalidInput("data must be a list of rows", field="data")
        records = []
        for i, values in enumerate(data):
            if not isinstance(values, list) or len(values) != len(columns):
                raise InvalidInput(
                    f"data row {i} must be a list of {len(columns)} values",
                    field="data",
                    row=i,
                )
            records.append(dict(zip(columns, values, strict=True)))
        return records

    @staticmethod
    def _entity_keys(raw: Any, n: int) -> list[str | None] | None:
        if raw is None:
            return None
        if not isinstance(raw, list) or len(raw) != n:
            raise InvalidInput(f"entity_keys must be a list of {n} keys", field="entity_keys")
        keys: list[str | None] = []
        for i, key in enumerate(raw):
            if key is not None and not isinstance(key, str | int):
                raise InvalidInput(f"entity key {i} must be a string", field="entity_keys", row=i)
            keys.append(None if key is None else str(key))
        return keys

    def check_row(self, record: dict[str, Any], row: int) -> tuple[Any, ...]:
        """One instance as a tuple in signature order; raises InvalidInput for a bad value."""
        assert self.columns is not None
        if len(record) != len(self.columns) or record.keys() != self._names:
            self._wrong_columns(record, row)
        values = []
        for name, kind, nullable, accepts_nan, check in zip(
            self.columns, self.kinds, self.nullable, self.accepts_nan, self._checks, strict=True
        ):
            raw = record[name]
            try:
                value = check(raw)
            except Bad:
                raise InvalidInput(
                    f"column {name!r} expects {kind}, got {raw!r} ({type(raw).__name__}) "
                    f"in row {row}",
                    field=name,
                    row=row,
                    expected=kind,
                ) from None
            if value is None and kind in MISSING_OK and not accepts_nan:
                raise InvalidInput(
                    f"instances[{row}].{name} is null or NaN, which model input {name!r} "
                    "does not accept (its signature says accepts_nan: false)",
                    field=name,
                    row=row,
                    expected=kind,
                    accepts_nan=False,
                )
            if value is None and not nullable and kind not in MISSING_OK:
                raise InvalidInput(
                    f"column {name!r} has a missing value (null or NaN) in row {row} "
                    "but is not nullable",
                    field=name,
                    row=row,
                    expected=kind,
                )
            values.append(value)
        return tuple(values)

    def _wrong_columns(self, record: dict[str, Any], row: int) -> None:
        assert self.columns is not None
        for name in self.columns:
            if name not in record:
                raise InvalidInput(
                    f"row {row} is missing column {name!r}",
                    field=name,
                    row=row,
                    expected=self.columns,
                )
        extra = next(str(k) for k in record if k not in self._names)
        raise InvalidInput(
            f"row {row} has unexpected column {extra!r}",
            field=extra,
            row=row,
            expected=self.columns,
        )

    def _free_rows(
        self,
        records: list[Any],
        probabilities: bool,
        entity_keys: list[str | None] | None,
        event_ms: int | None,
    ) -> ParsedInput:
        columns = list(dict.fromkeys(k for r in records for k in r))
        rows = [tuple(r.get(c) for c in columns) for r in records]
        keys = [_json.dumps(dict(sorted(r.items()))) for r in records]
        return ParsedInput(rows, keys, columns, probabilities, entity_keys, event_ms)

    # ---- batches --------------------------------------------------------------------------
    def frame(self, rows: Sequence[tuple[Any, ...]], columns: Sequence[str]) -> pd.DataFrame:
        """The typed DataFrame of a batch of checked rows (one column per signature input)."""
        if self.columns is None:
            return pd.DataFrame.from_records(list(rows), columns=list(columns))
        by_column = list(zip(*rows, strict=True))
        return pd.DataFrame(
            {
                name: column_array(kind, values)
                for name, kind, values in zip(self.columns, self.kinds, by_column, strict=True)
            }
        )

    def typed_frame(self, data: pd.DataFrame) -> pd.DataFrame:
        """A caller's DataFrame as the gateway predicts it: each row checked like a request's
        instance, then :meth:`frame` (signature order, its dtypes: ``category`` columns as
        categoricals). Columns outside the signature are ignored; a missing one, or a value
        that does not fit, raises InvalidInput naming the column (and row).

        ``keel.Client.load_model`` applies it, so a loaded model and the gateway see the
        same input (#15.23).
        """
        if self.columns is None:
            return data
        names = [str(c) for c in data.columns]
        missing = [c for c in self.columns if c not in names]
        if missing:
            raise InvalidInput(
                f"input lacks column(s) {missing}", field=missing[0], expected=self.columns
            )
        picked = data.set_axis(names, axis=1)[self.columns].astype(object)
        # Missing values (NaN, NaT, pd.NA) are JSON null in a request.
        records = picked.where(picked.notna(), None).to_dict("records")
        rows = [self.check_row(record, i) for i, record in enumerate(records)]
        return self.frame(rows, self.columns)

    def example_rows(self, example: dict[str, Any] | None) -> list[tuple[Any, ...]]:
        """The rows of a stored input example (``{"columns", "data"}``), checked like requests."""
        if not example or self.columns is None:
            return []
        parsed = self.parse({"columns": example["columns"], "data": example["data"]})
        return parsed.rows
