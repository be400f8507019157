"""Feedback submission costs about its own batch, not the history (#15.27).

The index (``keel.monitoring._feedback_index``) is checked from the outside: bytes the
process reads during a submission (``/proc/self/io`` ``rchar``, every ``read``/``pread``
of Parquet, DuckDB or SQLite), duplicates and unknown ids after crashes, compaction,
a lost index and concurrent processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pytest

from keel.errors import Unavailable
from keel.monitoring._feedback_index import INDEX_NAME
from keel.monitoring.feedback import FEEDBACK_SCHEMA, FeedbackStore
from keel.serving.predlog import PredictionLog, partition_dir, write_segment
from keel.serving.predquery import compact
from keel.serving.records import PredictionRecord

HOUR_MS = 3_600_000
START_MS = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)


def log_ids(root: Path, lo: int, hi: int, *, hours: int = 24) -> None:
    """Predictions ``p<lo>`` … ``p<hi-1>`` as one more file in each of ``hours`` partitions."""
    per_hour = -(-(hi - lo) // hours)
    for h in range(hours):
        ids = [f"p{i}" for i in range(lo + h * per_hour, min(hi, lo + (h + 1) * per_hour))]
        at_ms = START_MS + h * HOUR_MS
        table = pa.table({"ts": pa.array([at_ms] * len(ids), pa.timestamp("ms", tz="UTC")),
                          "request_id": ids, "output": [1] * len(ids)})  # fmt: skip
        write_segment(table, partition_dir(root, "churn", 1, at_ms), f"part-{lo}.parquet")


def store_labels(root: Path, lo: int, hi: int) -> None:
    """Labels for ``p<lo>`` … written as segments of 10k, as a label job would leave them."""
    now = dt.datetime.now(dt.UTC)
    for start in range(lo, hi, 10_000):
        n = min(hi, start + 10_000) - start
        table = pa.table(
            {
                "request_id": [f"p{i}" for i in range(start, start + n)],
                "entity_key": [None] * n,
                "event_ts": [None] * n,
                "label": ["1"] * n,
                "label_value": [1.0] * n,
                "model": [None] * n,
                "received_ts": [now] * n,
            },
            schema=FEEDBACK_SCHEMA,
        )
        write_segment(table, root / f"date={now:%Y-%m-%d}", f"part-{start}.parquet")


def bytes_read_by(call: object) -> int:
    def rchar() -> int:
        text = Path("/proc/self/io").read_text()
        return int(text.split("rchar:")[1].split()[0])

    before = rchar()
    call()  # type: ignore[operator]
    return rchar() - before


def labels(lo: int, hi: int) -> list[dict[str, object]]:
    return [{"request_id": f"p{i}", "label": 1} for i in range(lo, hi)]


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_submission_reads_the_same_with_ten_times_the_history(tmp_path: Path) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    store = FeedbackStore(fb, preds)
    log_ids(preds, 0, 10_000)
    log_ids(preds, 1_000_000, 1_000_100)  # the predictions the measured batches label
    store_labels(fb, 0, 10_000)
    assert store.submit(labels(0, 1)).duplicates == 1  # first call: builds the index
    small = bytes_read_by(lambda: store.submit(labels(1_000_000, 1_000_020)))
    assert store.index.last_catch_up.prediction_rows == 0

    log_ids(preds, 10_000, 100_000)  # ten times the history, in the same partitions
    store_labels(fb, 10_000, 100_000)
    assert store.submit(labels(0, 1)).duplicates == 1  # catches up once
    assert store.index.last_catch_up.feedback_rows == 90_000
    large = bytes_read_by(lambda: store.submit(labels(1_000_020, 1_000_040)))
    result = store.submit(labels(1_000_040, 1_000_060) + labels(100, 110))
    assert (result.accepted, result.duplicates, result.unknown) == (20, 10, 0)
    # Before the index a submission read every label and request id (5.5x more bytes
    # here); now a probe reads one B-tree path per key, one level deeper at most.
    assert large < 2 * small, (small, large)
    assert store.index.last_catch_up.prediction_rows == 0


def test_a_segment_written_before_a_crash_is_found_by_the_next_submission(
    tmp_path: Path,
) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    log_ids(preds, 0, 100, hours=2)
    store = FeedbackStore(fb, preds)
    assert store.submit(labels(0, 10)).accepted == 10
    # A process killed between the segment's rename and the index commit leaves this:
    store_labels(fb, 10, 20)
    result = store.submit(labels(0, 30))
    assert (result.accepted, result.duplicates) == (10, 20)
    assert store.index.last_catch_up.feedback_rows == 10
    assert len(store.labels()) == 30


@pytest.mark.parametrize("damage", ["deleted", "not a database", "old format"])
def test_a_lost_or_broken_index_is_rebuilt_from_the_segments(tmp_path: Path, damage: str) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    log_ids(preds, 0, 100, hours=2)
    store = FeedbackStore(fb, preds)
    store.submit(labels(0, 50))
    index = fb / INDEX_NAME
    if damage == "deleted":
        for path in fb.glob(f"{INDEX_NAME}*"):
            path.unlink()
    elif damage == "not a database":
        for path in fb.glob(f"{INDEX_NAME}*"):
            path.unlink()
        index.write_bytes(b"\x00garbage" * 512)
    else:
        with sqlite3.connect(index) as con:
            con.execute("PRAGMA user_version=99")
    result = store.submit(labels(40, 60) + [{"request_id": "nope", "label": 0}])
    assert (result.accepted, result.duplicates, result.unknown) == (11, 10, 1)
    assert len(store.labels()) == 61


def test_predictions_logged_or_compacted_later_are_known(tmp_path: Path) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    store = FeedbackStore(fb, preds)
    now_ms = int(time.time() * 1000)
    with PredictionLog(preds, flush_interval_s=0.01) as log:
        for batch in range(3):
            for i in range(5):
                log.append(_record(f"r{batch}-{i}", now_ms))
            assert log.flush()
            ids = [f"r{b}-{i}" for b in range(batch + 1) for i in range(5)]
            result = store.submit([{"request_id": r, "label": 1} for r in ids])
            assert (result.accepted, result.unknown) == (5, 0)
    compact(preds, include_open=True, grace_s=0)
    result = store.submit([{"request_id": "r0-0", "label": 0}])
    assert (result.accepted, result.unknown) == (1, 0)
    # The compacted file replaces files already indexed: it is recorded, not read.
    assert store.index.last_catch_up.prediction_rows == 0


def test_a_file_added_in_the_same_clock_tick_is_not_missed(tmp_path: Path) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    log_ids(preds, 0, 10, hours=1)
    store = FeedbackStore(fb, preds)
    store.submit(labels(0, 1))
    partition = partition_dir(preds, "churn", 1, START_MS)
    mtime = partition.stat()
    log_ids(preds, 10, 20, hours=1)
    # The coarse kernel clock can leave the directory's mtime unchanged by this rename.
    os.utime(partition, ns=(mtime.st_atime_ns, mtime.st_mtime_ns))
    assert store.submit(labels(10, 20)).unknown == 0


def test_event_times_are_compared_in_the_stored_milliseconds(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback", tmp_path / "predictions")
    item = {"entity_key": "cust-1", "event_time": "2026-03-01T10:00:00.123456Z", "label": 1}
    assert store.submit([item]).accepted == 1
    again = store.submit([{**item, "event_time": "2026-03-01T10:00:00.123Z"}, item])
    assert (again.accepted, again.duplicates) == (0, 2)


def test_concurrent_processes_store_a_label_once(tmp_path: Path) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    log_ids(preds, 0, 2_000, hours=4)
    go = tmp_path / "go"
    script = textwrap.dedent(
        f"""
        import json, time
        from pathlib import Path
        from keel.monitoring.feedback import FeedbackStore
        store = FeedbackStore(Path({str(fb)!r}), Path({str(preds)!r}))
        items = [{{"request_id": f"p{{i}}", "label": 1}} for i in range(2_000)]
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        print(json.dumps(store.submit(items).__dict__))
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    time.sleep(1.0)  # let them import and wait at the line
    go.touch()
    results = [json.loads(w.communicate(timeout=120)[0]) for w in workers]
    assert sorted(r["accepted"] for r in results) == [0, 0, 2_000]
    assert all(r["unknown"] == 0 for r in results)
    assert len(FeedbackStore(fb, preds).labels()) == 2_000


def _record(request_id: str, at_ms: int) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        at_ms=at_ms,
        model="churn",
        version=1,
        features={"tenure": 1.0},
        output=1,
        latency_ms=1.0,
    )


def test_a_busy_index_is_unavailable_and_stores_nothing(tmp_path: Path) -> None:
    preds, fb = tmp_path / "predictions", tmp_path / "feedback"
    store = FeedbackStore(fb, preds)
    store.submit(labels(0, 1))
    store.index.busy_timeout_s = 0.2
    holder = sqlite3.connect(fb / INDEX_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process building the index
    try:
        with pytest.raises(Unavailable, match="feedback index .* is busy") as caught:
            store.submit(labels(1, 5))
        assert caught.value.status == 503
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(store.labels()) == 1
    assert store.submit(labels(1, 5)).accepted == 4
