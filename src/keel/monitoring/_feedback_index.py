"""The feedback store's index: which labels are stored and which request ids were logged.

Without it a submission read every stored label and every logged request id to find
duplicates and unknown ids, so its cost grew with history (#15.27). The index is one
SQLite file in the feedback directory holding 16-byte BLAKE2b digests of

- every stored label's key ``(request_id, entity_key, event_ts in ms, label)``, and
- every request id of the prediction log,

so a submission probes its own keys (a B-tree lookup each) and reads only what is new.

The index is derived: the Parquet segments stay the record, and the index is brought up
to date from them before each use ("catch-up"), so it never has to be right on its own:

- feedback segments: the index lists the segments it holds (``feedback_segments``). A
  submission writes its segment and records its keys inside one SQLite write
  transaction, committed after the segment's fsync and rename; a crash in between leaves
  a segment the index lacks, found by the next catch-up, which lists only the day
  directories from the newest indexed day on (less one day, for a batch written around
  midnight), never the whole history.
- prediction segments (written by the prediction log, which does not know about the
  index): one ``stat`` per hour partition; a partition is listed again only when its
  directory's mtime changed, and only its new files are read (their ``request_id``
  column). A compacted file whose inputs were all indexed is recorded without being
  read. An mtime within two seconds of the stat is not trusted (a file renamed in the
  same clock tick would not change it), so that partition is listed again next time.

``BEGIN IMMEDIATE`` makes submissions of several processes sharing the directory take
turns (WAL mode, ``busy_timeout``), so two concurrent submissions of the same label
store it once. An index file that is missing, of another format version, or not a
SQLite database is rebuilt from the segments (a one-time full read). It is not in the
metadata database (no Alembic migration): it is a cache of files next to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.errors import Unavailable
from keel.serving.predlog import iter_partitions
from keel.serving.predquery import COMPACTED_FROM

__all__ = ["CatchUp", "FeedbackIndex", "keyed_label", "label_key", "request_key"]

FORMAT_VERSION = 1
INDEX_NAME = "index.sqlite3"
_SETTLED_NS = 2_000_000_000  # an mtime this much older than its stat is trusted
_CHUNK = 500  # keys per IN (...) probe: well under SQLite's variable limit
_PENDING_MAX = 2_000_000  # catch-up keys held in memory before a sorted insert (~150 MB)
_LABEL_COLUMNS = ("request_id", "entity_key", "event_ts", "label")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (key BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS predicted (key BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback_segments (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prediction_partitions (
    path TEXT PRIMARY KEY, mtime_ns INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS prediction_files (
    path TEXT, name TEXT, PRIMARY KEY (path, name)
) WITHOUT ROWID;
"""


def _digest(text: str) -> bytes:
    # surrogatepass: a lone surrogate from a JSON body still hashes (to itself).
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _part(value: str | None) -> str:
    return "~" if value is None else f"{len(value)}:{value}"  # length-prefixed: no ambiguity


def label_key(
    request_id: str | None, entity_key: str | None, event_ms: int | None, label: str
) -> bytes:
    """The digest a stored label is known by (equal labels for the same key are duplicates)."""
    when = "" if event_ms is None else str(event_ms)
    return _digest(f"{_part(request_id)}{_part(entity_key)}{when}|{label}")


def keyed_label(label: str, source: str | None, signal: str | None) -> str:
    """The label text a key is made of: an implicit label (R-TRN-23) carries its signal,
    so an explicit label equal to it is still stored (and wins), as is another signal."""
    return label if source != "implicit" else f"{label}|implicit:{signal}"


def request_key(request_id: str) -> bytes:
    """The digest a logged request id is known by."""
    return _digest(request_id)


@dataclass
class CatchUp:
    """What one catch-up read: files and rows of segments not indexed before."""

    feedback_files: int = 0
    feedback_rows: int = 0
    prediction_partitions_listed: int = 0
    prediction_files: int = 0
    prediction_rows: int = 0


class FeedbackIndex:
    """The SQLite index of one feedback directory and the prediction log it judges."""

    def __init__(
        self, feedback_root: Path, predictions_root: Path, *, busy_timeout_s: float = 60.0
    ) -> None:
        self.feedback_root = feedback_root
        self.predictions_root = predictions_root
        self.path = feedback_root / INDEX_NAME
        self.busy_timeout_s = busy_timeout_s
        self.last_catch_up = CatchUp()

    @contextmanager
    def writing(self) -> Iterator[IndexTransaction]:
        """One write transaction, caught up; other processes' writers wait for it.

        Raises :class:`Unavailable` when another writer held the index for longer than
        ``busy_timeout_s`` (a first build from a long history): nothing is written.
        """
        try:
            con = self._connect()
        except sqlite3.OperationalError as exc:
            raise self._busy(exc) from exc
        try:
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._busy(exc) from exc
            txn = IndexTransaction(self, con)
            self.last_catch_up = txn.catch_up()
            yield txn
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def _busy(self, exc: sqlite3.OperationalError) -> Exception:
        if "locked" not in str(exc):
            return exc  # read-only, disk full, …: the error as SQLite says it
        return Unavailable(
            f"the feedback index {self.path} is busy (another submission is writing or "
            f"building it) for more than {self.busy_timeout_s:g} s; retry the batch",
            field="items",
        )

    def _connect(self) -> sqlite3.Connection:
        self.feedback_root.mkdir(parents=True, exist_ok=True)
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise  # locked, read-only, disk full: not a reason to drop the index
            # Not a database (a torn or foreign file): set it aside and rebuild.
            aside = self.path.with_name(f"{INDEX_NAME}.corrupt-{int(time.time())}")
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            return self._open()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are the explicit BEGIN/COMMIT above.
        con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL survives kill -9; a power cut may lose the last commits,
            # which the catch-up finds again from the segments.
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA cache_size=-65536")  # 64 MiB: a first build stays in memory
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version != FORMAT_VERSION:
                con.execute("BEGIN IMMEDIATE")
                if con.execute("PRAGMA user_version").fetchone()[0] != FORMAT_VERSION:
                    for table in _tables(con):
                        con.execute(f'DROP TABLE "{table}"')
                    # One statement at a time: executescript would COMMIT first.
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(f"PRAGMA user_version={FORMAT_VERSION}")
                con.execute("COMMIT")
        except BaseException:
            con.close()
            raise
        return con


class IndexTransaction:
    """Probes and inserts inside :meth:`FeedbackIndex.writing`."""

    def __init__(self, index: FeedbackIndex, con: sqlite3.Connection) -> None:
        self.index = index
        self.con = con
        # Keys found by a catch-up, inserted in sorted runs: a history read for the first
        # time goes into the B-trees in order instead of at random pages.
        self._pending: dict[str, set[bytes]] = {"labels": set(), "predicted": set()}

    def stored_labels(self, keys: Iterable[bytes]) -> set[bytes]:
        """The given label keys that are already stored."""
        return self._present("labels", keys)

    def logged_requests(self, keys: Iterable[bytes]) -> set[bytes]:
        """The given request keys that the prediction log holds."""
        return self._present("predicted", keys)

    def add_segment(self, name: str, keys: Sequence[bytes]) -> None:
        """Record a feedback segment (``date=…/part-….parquet``) and its label keys."""
        self._insert("labels", keys)
        self.con.execute("INSERT OR IGNORE INTO feedback_segments VALUES (?)", (name,))

    def _insert(self, table: str, keys: Iterable[bytes]) -> None:
        rows = ((k,) for k in sorted(set(keys)))
        self.con.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", rows)

    def _queue(self, table: str, keys: Iterable[bytes]) -> None:
        pending = self._pending[table]
        pending.update(keys)
        if len(pending) >= _PENDING_MAX:
            self._flush()

    def _flush(self) -> None:
        for table, pending in self._pending.items():
            self._insert(table, pending)
            pending.clear()

    def _present(self, table: str, keys: Iterable[bytes]) -> set[bytes]:
        wanted = sorted(set(keys))
        found: set[bytes] = set()
        for lo in range(0, len(wanted), _CHUNK):
            chunk = wanted[lo : lo + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.con.execute(f"SELECT key FROM {table} WHERE key IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    # -- catch-up -----------------------------------------------------------------------
    def catch_up(self) -> CatchUp:
        """Index the feedback and prediction segments written since the last catch-up."""
        report = CatchUp()
        self._catch_up_feedback(report)
        self._catch_up_predictions(report)
        self._flush()
        return report

    def _catch_up_feedback(self, report: CatchUp) -> None:
        root = self.index.feedback_root
        newest = self.con.execute("SELECT max(name) FROM feedback_segments").fetchone()[0]
        since = ""
        if newest is not None:
            since = _day_before(newest.split("/", 1)[0].removeprefix("date="))
        known = {
            row[0]
            for row in self.con.execute(
                "SELECT name FROM feedback_segments WHERE name >= ?", (f"date={since}",)
            )
        }
        days = sorted(
            e.name
            for e in os.scandir(root)
            if e.is_dir() and e.name.startswith("date=") and e.name >= f"date={since}"
        )
        for day in days:
            for entry in sorted(os.scandir(root / day), key=lambda e: e.name):
                name = f"{day}/{entry.name}"
                if entry.name.startswith(".") or not entry.name.endswith(".parquet"):
                    continue
                if name in known:
                    continue
                try:
                    segment = pq.ParquetFile(entry.path)
                    present = set(segment.schema_arrow.names)
                    wanted = [*_LABEL_COLUMNS, *({"source", "signal"} & present)]
                    table = segment.read(columns=wanted, use_threads=False)
                except (OSError, pa.ArrowException):
                    continue  # not a complete segment (yet): the readers skip it too
                self._queue("labels", _label_keys(table))
                self.con.execute("INSERT INTO feedback_segments VALUES (?)", (name,))
                report.feedback_files += 1
                report.feedback_rows += table.num_rows

    def _catch_up_predictions(self, report: CatchUp) -> None:
        root = self.index.predictions_root
        if not root.exists():
            return
        seen = dict(self.con.execute("SELECT path, mtime_ns FROM prediction_partitions"))
        for partition in iter_partitions(root):
            relative = partition.relative_to(root).as_posix()
            try:
                stat_ns, mtime_ns = time.time_ns(), partition.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            if relative in seen and seen[relative] == mtime_ns:
                continue
            report.prediction_partitions_listed += 1
            settled = self._index_partition(partition, relative, report)
            trusted = mtime_ns if settled and stat_ns - mtime_ns > _SETTLED_NS else None
            self.con.execute(
                "INSERT OR REPLACE INTO prediction_partitions VALUES (?, ?)", (relative, trusted)
            )

    def _index_partition(self, partition: Path, relative: str, report: CatchUp) -> bool:
        """Index the partition's new files; False when one could not be read (retry later)."""
        indexed = {
            row[0]
            for row in self.con.execute(
                "SELECT name FROM prediction_files WHERE path = ?", (relative,)
            )
        }
        try:
            entries = list(os.scandir(partition))
        except FileNotFoundError:
            return False
        present = sorted(
            e.name for e in entries if e.name.endswith(".parquet") and not e.name.startswith(".")
        )
        settled = True
        for name in present:
            if name in indexed:
                continue
            path = partition / name
            try:
                if name.startswith("compact-") and _inputs_indexed(path, indexed):
                    indexed.add(name)  # its rows are those of files already indexed
                    continue
                ids = pq.ParquetFile(path).read(columns=["request_id"], use_threads=False)[0]
            except (OSError, pa.ArrowException):
                settled = False  # torn or vanished (compacted meanwhile): look again later
                continue
            self._queue("predicted", map(request_key, ids.drop_null().to_pylist()))
            indexed.add(name)
            report.prediction_files += 1
            report.prediction_rows += len(ids)
        # Forget names no longer there (compacted away): the list stays the size of the
        # partition, and a compacted file was checked against them above first.
        self.con.execute("DELETE FROM prediction_files WHERE path = ?", (relative,))
        self.con.executemany(
            "INSERT INTO prediction_files VALUES (?, ?)",
            ((relative, n) for n in sorted(indexed.intersection(present))),
        )
        return settled


def _inputs_indexed(path: Path, indexed: set[str]) -> bool:
    metadata = pq.read_metadata(path).metadata or {}
    inputs = json.loads(metadata.get(COMPACTED_FROM, b"[]"))
    return bool(inputs) and indexed.issuperset(inputs)


def _label_keys(table: pa.Table) -> list[bytes]:
    # Through timestamp[ms]: the key is in the precision the schema stores.
    event_ts = pc.cast(table.column("event_ts"), pa.timestamp("ms", tz="UTC"), safe=False)
    event_ms = pc.cast(event_ts, pa.int64()).to_pylist()
    n = table.num_rows
    names = table.column_names
    sources = table.column("source").to_pylist() if "source" in names else [None] * n
    signals = table.column("signal").to_pylist() if "signal" in names else [None] * n
    return [
        label_key(r, e, t, keyed_label(lab, src, sig))
        for r, e, t, lab, src, sig in zip(
            table.column("request_id").to_pylist(),
            table.column("entity_key").to_pylist(),
            event_ms,
            table.column("label").to_pylist(),
            sources,
            signals,
            strict=True,
        )
    ]


def _day_before(day: str) -> str:
    try:
        return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    except ValueError:
        return ""  # a stray directory name: list from the beginning


def _tables(con: sqlite3.Connection) -> list[str]:
    rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return [row[0] for row in rows]
