"""Online stores: the latest value of every feature per entity, for serving.

``SqliteOnlineStore`` (default) keeps one table per view in its own SQLite
file, one row per entity with a column per feature, so a lookup is one
primary-key read. ``RedisOnlineStore`` (when ``KEEL_REDIS_URL`` is set) keeps
one hash per entity, written and read through pipelines.

Both keep a row only when it is at least as new as the stored one (event time
in epoch microseconds), so replays and late materialisations never move a
value back in time. NaN floats are stored as NULL.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from keel.errors import InvalidInput, Unavailable
from keel.features.models import ValueType

__all__ = ["OnlineStore", "OnlineTable", "RedisOnlineStore", "SqliteOnlineStore"]

_SQL_TYPES = {
    ValueType.INT64: "INTEGER",
    ValueType.FLOAT64: "REAL",
    ValueType.STRING: "TEXT",
    ValueType.BOOL: "INTEGER",
}


@dataclass(frozen=True)
class OnlineTable:
    """The online layout of one view: join keys and features with their types."""

    view: str
    keys: tuple[tuple[str, ValueType], ...]
    features: tuple[tuple[str, ValueType], ...]

    @cached_property
    def tag(self) -> str:
        """Changes whenever the layout changes, so a new layout never reads old rows."""
        text = repr((self.keys, self.features))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @cached_property
    def table_name(self) -> str:
        return f"{self.view}__{self.tag}"


#: One row to write: key values, event time (epoch µs), feature values (in table order).
Row = tuple[tuple[Any, ...], int, tuple[Any, ...]]
#: One row read: event time (epoch µs) and feature values, or None when the entity is unknown.
Found = tuple[int, tuple[Any, ...]] | None


class OnlineStore(Protocol):
    """Where materialised and pushed feature values live for serving."""

    def write(self, table: OnlineTable, rows: Sequence[Row], ttl_us: int) -> int:
        """Upsert rows (newer or equal event time wins); returns rows written.

        ``ttl_us`` (0 = none) lets a store expire values that can no longer be served.
        """
        ...

    def read(self, table: OnlineTable, keys: Sequence[tuple[Any, ...]]) -> list[Found]:
        """Values for each key tuple, in order."""
        ...

    def drop(self, table: OnlineTable) -> None:
        """Forget every value of a layout."""
        ...

    def close(self) -> None: ...


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class SqliteOnlineStore:
    """Online values in a SQLite file (WAL); one connection per thread."""

    def __init__(self, path: Path, busy_timeout_ms: int = 30_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._created: set[str] = set()
        self._reads: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process kill; the offline source can
            # always rebuild the online copy after an OS crash.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _ensure(self, table: OnlineTable) -> None:
        name = table.table_name
        if name in self._created:
            return
        columns = [f'"{k}" {_SQL_TYPES[t]} NOT NULL' for k, t in table.keys]
        columns.append("__ts INTEGER NOT NULL")
        columns += [f'"{f}" {_SQL_TYPES[t]}' for f, t in table.features]
        keys = ", ".join(f'"{k}"' for k, _ in table.keys)
        self._conn().execute(
            f'CREATE TABLE IF NOT EXISTS "{name}" ({", ".join(columns)}, '
            f"PRIMARY KEY ({keys})) WITHOUT ROWID"
        )
        self._created.add(name)

    def write(self, table: OnlineTable, rows: Sequence[Row], ttl_us: int) -> int:
        """Upsert ``rows`` in one transaction; an older event time never overwrites a newer one."""
        if not rows:
            return 0
        self._ensure(table)
        names = [k for k, _ in table.keys] + ["__ts"] + [f for f, _ in table.features]
        quoted = ", ".join(f'"{n}"' for n in names)
        marks = ", ".join("?" * len(names))
        keys = ", ".join(f'"{k}"' for k, _ in table.keys)
        updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names[len(table.keys) :])
        sql = (
            f'INSERT INTO "{table.table_name}" ({quoted}) VALUES ({marks}) '
            f"ON CONFLICT ({keys}) DO UPDATE SET {updates} "
            f'WHERE excluded.__ts >= "{table.table_name}".__ts'
        )
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, ((*key, ts, *map(_clean, values)) for key, ts, values in rows))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise Unavailable(f"online store write failed: {exc}") from exc
        return len(rows)

    def read(self, table: OnlineTable, keys: Sequence[tuple[Any, ...]]) -> list[Found]:
        """One primary-key read per key tuple."""
        plan = self._reads.get(table.table_name)
        if plan is None:
            self._ensure(table)
            columns = ", ".join(["__ts"] + [f'"{f}"' for f, _ in table.features])
            where = " AND ".join(f'"{k}" = ?' for k, _ in table.keys)
            sql = f'SELECT {columns} FROM "{table.table_name}" WHERE {where}'
            bools = tuple(i for i, (_, t) in enumerate(table.features) if t is ValueType.BOOL)
            plan = self._reads[table.table_name] = (sql, bools)
        sql, bools = plan
        conn = self._conn()
        found: list[Found] = []
        for key in keys:
            row = conn.execute(sql, key).fetchone()
            if row is None:
                found.append(None)
            elif bools:
                values = tuple(
                    bool(v) if i in bools and v is not None else v for i, v in enumerate(row[1:])
                )
                found.append((row[0], values))
            else:
                found.append((row[0], row[1:]))
        return found

    def drop(self, table: OnlineTable) -> None:
        self._conn().execute(f'DROP TABLE IF EXISTS "{table.table_name}"')
        self._created.discard(table.table_name)
        self._reads.pop(table.table_name, None)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


# One call upserts many keys. ARGV[1]: the field names joined by \x1f; then per key its
# event time and its values joined by \x1f, each "=value", or "" for null (few arguments:
# redis-py spends most of a pipeline's time packing them). A key is replaced only when
# its stored event time is not newer.
_UPSERT_LUA = """
local function split(s)
  local out, start = {}, 1
  while true do
    local stop = string.find(s, '\\31', start, true)
    if not stop then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, stop - 1)
    start = stop + 1
  end
end
local names = split(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local ts = ARGV[2 * i]
  local current = redis.call('HGET', key, '__ts')
  if (not current) or tonumber(current) <= tonumber(ts) then
    local values = split(ARGV[2 * i + 1])
    local args = {'__ts', ts}
    for j, name in ipairs(names) do
      local v = values[j]
      if v and #v > 0 then
        args[#args + 1] = name
        args[#args + 1] = string.sub(v, 2)
      end
    end
    redis.call('DEL', key)
    redis.call('HSET', key, unpack(args))
    written = written + 1
  end
end
return written
"""


def _encode(value: Any, dtype: ValueType) -> str:
    if dtype is ValueType.STRING and "\x1f" in str(value):
        raise InvalidInput("string feature values must not contain \\x1f", field=str(value)[:40])
    if dtype is ValueType.BOOL:
        return "1" if value else "0"
    if dtype is ValueType.FLOAT64:
        return repr(float(value))
    return str(value)


def _decode(raw: bytes | str | None, dtype: ValueType) -> Any:
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    if dtype is ValueType.INT64:
        return int(text)
    if dtype is ValueType.FLOAT64:
        return float(text)
    if dtype is ValueType.BOOL:
        return text == "1"
    return text


class RedisOnlineStore:
    """Online values in Redis: one hash per (view layout, entity), pipelined."""

    def __init__(
        self, url: str, prefix: str = "keel:fv", batch: int = 20_000, keys_per_call: int = 500
    ) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self.batch = batch
        self.keys_per_call = keys_per_call
        self._upsert = self.client.register_script(_UPSERT_LUA)

    def _key(self, table: OnlineTable, key: tuple[Any, ...]) -> str:
        return f"{self.prefix}:{table.table_name}:" + "\x1f".join(str(k) for k in key)

    def write(self, table: OnlineTable, rows: Sequence[Row], ttl_us: int) -> int:
        """Upsert through a Lua script (newer-or-equal wins), ``batch`` rows per round trip.

        Keys do not expire in Redis: the TTL is applied on read against the
        store's clock, like the offline rule, so replays of old data behave.
        """
        import redis

        header = "\x1f".join(f for f, _ in table.features)
        types = [t for _, t in table.features]
        try:
            for start in range(0, len(rows), self.batch):
                pipe = self.client.pipeline(transaction=False)
                for offset in range(start, min(start + self.batch, len(rows)), self.keys_per_call):
                    keys: list[str] = []
                    args: list[Any] = [header]
                    for key, ts, values in rows[offset : offset + self.keys_per_call]:
                        keys.append(self._key(table, key))
                        args.append(ts)
                        args.append(
                            "\x1f".join(
                                "" if v is None or v != v else "=" + _encode(v, t)
                                for v, t in zip(values, types, strict=True)
                            )
                        )
                    self._upsert(keys=keys, args=args, client=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"online store (Redis) write failed: {exc}") from exc
        return len(rows)

    def read(self, table: OnlineTable, keys: Sequence[tuple[Any, ...]]) -> list[Found]:
        """One pipelined ``HMGET`` per key tuple, one round trip in all."""
        import redis

        fields = ["__ts"] + [f for f, _ in table.features]
        try:
            if len(keys) == 1:
                replies = [self.client.hmget(self._key(table, keys[0]), fields)]
            else:
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    pipe.hmget(self._key(table, key), fields)
                replies = pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"online store (Redis) unavailable: {exc}") from exc
        found: list[Found] = []
        for reply in replies:
            if reply[0] is None:
                found.append(None)
                continue
            values = tuple(
                _decode(raw, dtype)
                for raw, (_, dtype) in zip(reply[1:], table.features, strict=True)
            )
            found.append((int(reply[0]), values))
        return found

    def drop(self, table: OnlineTable) -> None:
        """Delete every key of a layout (SCAN, in batches)."""
        batch: list[Any] = []
        for key in self.client.scan_iter(match=f"{self.prefix}:{table.table_name}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.delete(*batch)
                batch.clear()
        if batch:
            self.client.delete(*batch)

    def close(self) -> None:
        self.client.close()
