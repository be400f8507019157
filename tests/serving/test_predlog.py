"""The prediction log: background writer, Parquet segments, DuckDB queries, compaction, kill -9."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from keel.cli.main import app
from keel.config import Settings
from keel.errors import InvalidInput
from keel.serving import (
    CorruptSegmentWarning,
    PredictionLog,
    PredictionRecord,
    compact,
    predictions,
)
from keel.serving.predlog import log_root
from keel.serving.predquery import segment_files

HOUR_MS = 3_600_000
BASE_MS = int(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC).timestamp() * 1000)  # 10:00 UTC


def record(i: int, at_ms: int = BASE_MS, version: int = 1, **overrides: Any) -> PredictionRecord:
    fields: dict[str, Any] = {
        "request_id": f"r{i}",
        "at_ms": at_ms,
        "model": "churn",
        "version": version,
        "features": {"tenure": float(i), "contract": "Two year", "lines": i, "senior": i % 2 == 0},
        "output": i % 2,
        "latency_ms": 1.25,
        "probabilities": [0.25, 0.75],
        "deployment": "churn-prod",
        "arm": "canary",
        "entity_key": f"c{i}",
    }
    fields.update(overrides)
    return PredictionRecord(**fields)


def fill(root: Path, records: list[PredictionRecord], **options: Any) -> PredictionLog:
    with PredictionLog(root, flush_interval_s=0.05, **options) as log:
        for item in records:
            log.append(item)
    return log


def test_predlog_round_trips_typed_features_and_fields(tmp_path: Path) -> None:
    fill(tmp_path, [record(i, BASE_MS + i, cached=i == 1, extra={"k": i}) for i in range(3)])

    table = predictions("churn", 1, root=tmp_path)

    assert table.num_rows == 3
    types = {f.name: f.type for f in table.schema}
    assert types["f_tenure"] == pa.float64() and types["f_lines"] == pa.int64()
    assert types["f_contract"] == pa.string() and types["f_senior"] == pa.bool_()
    assert types["ts"] == pa.timestamp("ms", tz="UTC")
    first = table.to_pylist()[1]
    assert first["model"] == "churn" and first["version"] == 1 and first["request_id"] == "r1"
    assert first["ts"] == dt.datetime.fromtimestamp((BASE_MS + 1) / 1000, tz=dt.UTC)
    assert first["f_lines"] == 1 and first["probabilities"] == [0.25, 0.75]
    assert (first["cached"], first["fallback"], first["arm"]) == (True, False, "canary")
    assert json.loads(first["extra"]) == {"k": 1} and first["entity_key"] == "c1"
    assert predictions(root=tmp_path).to_pandas()["f_tenure"].tolist() == [0.0, 1.0, 2.0]


def test_newest_rows_come_oldest_first_and_none_match_is_an_empty_table(tmp_path: Path) -> None:
    fill(tmp_path, [record(i, BASE_MS + i) for i in range(5)])

    newest = predictions("churn", root=tmp_path, limit=2, newest=True)
    # a deployment that served nothing yet: keel deploy replay crashed in pyarrow's take
    # on the empty list of row indices (type null) instead of reporting no rows
    none = predictions("churn", root=tmp_path, limit=2, newest=True, deployment="other")
    one = predictions("churn", root=tmp_path, limit=1, newest=True)

    assert newest.column("request_id").to_pylist() == ["r3", "r4"]
    assert none.num_rows == 0 and "request_id" in none.column_names
    assert one.column("request_id").to_pylist() == ["r4"]


def test_predlog_partitions_by_version_and_hour_and_queries_prune(tmp_path: Path) -> None:
    fill(
        tmp_path,
        [record(0, BASE_MS), record(1, BASE_MS + HOUR_MS), record(2, BASE_MS, version=2)],
    )
    start = dt.datetime(2026, 3, 1, 11, tzinfo=dt.UTC)

    files = segment_files(tmp_path, "churn", 1, start, start + dt.timedelta(hours=1))
    window = predictions("churn", 1, start, "2026-03-01T12:00:00+00:00", root=tmp_path)

    assert [f.parent.relative_to(tmp_path).as_posix() for f in files] == [
        "model=churn/version=1/date=2026-03-01/hour=11"
    ]
    assert window.column("request_id").to_pylist() == ["r1"]
    assert predictions("churn", 2, root=tmp_path).column("request_id").to_pylist() == ["r2"]
    assert predictions("other", root=tmp_path).num_rows == 0


def test_predlog_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_interval_s=0.05, max_batch=100, max_queue=100)
    started = time.perf_counter()
    for i in range(10_000):
        log.append(record(i, BASE_MS + i))
    appended_s = time.perf_counter() - started
    log.close()

    stats = log.stats
    assert stats.dropped_full > 0 and stats.written + stats.dropped_full == 10_000
    assert predictions(root=tmp_path).num_rows == stats.written
    assert appended_s < 1.0  # 10,000 appends never waited on the writer


def test_predlog_append_never_raises_on_bad_records(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, flush_interval_s=0.05) as log:
        log.append(None)  # type: ignore[arg-type]
        log.append({"request_id": "x"})  # type: ignore[arg-type]
        log.append(record(1, version="one"))  # type: ignore[arg-type]
        log.append(record(2, features={"tenure": object()}))
        log.append(record(3))

    assert log.stats.invalid == 3
    assert predictions(root=tmp_path).column("request_id").to_pylist() == ["r2", "r3"]


def test_predlog_append_after_close_is_counted_not_raised(tmp_path: Path) -> None:
    log = fill(tmp_path, [record(0)])

    log.append(record(1))

    assert (log.stats.written, log.stats.dropped_closed) == (1, 1)


def test_predlog_widens_a_feature_whose_type_changes(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, flush_interval_s=0.05) as log:
        log.append(record(0, features={"x": 1}))
        assert log.flush()
        log.append(record(1, BASE_MS + 1, features={"x": 2.5}))
        assert log.flush()
        log.append(record(2, BASE_MS + 2, features={"x": "three"}))

    table = predictions(root=tmp_path)

    assert table.column("f_x").to_pylist() == ["1", "2.5", "three"]


def test_predlog_from_settings_writes_under_the_artifact_root(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "keel", prediction_log_flush_interval_s=0.05)

    with PredictionLog.from_settings(settings) as log:
        log.append(record(0))

    assert log.root == tmp_path / "keel" / "artifacts" / "predictions" == log_root(settings)
    assert predictions(settings=settings).num_rows == 1


def test_predictions_skips_a_torn_segment_with_a_warning(tmp_path: Path) -> None:
    fill(tmp_path, [record(0)])
    good = segment_files(tmp_path)[0]
    torn = good.with_name("part-torn.parquet")
    torn.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    with pytest.warns(CorruptSegmentWarning, match="part-torn.parquet"):
        table = predictions(root=tmp_path)

    assert table.column("request_id").to_pylist() == ["r0"]


def test_predictions_skips_a_segment_corrupt_inside_with_a_warning(tmp_path: Path) -> None:
    fill(tmp_path, [record(0)])
    good = segment_files(tmp_path)[0]
    data = bytearray(good.read_bytes())
    data[4:64] = b"\xff" * 60  # magic bytes intact, column data and page headers garbage
    good.with_name("part-garbled.parquet").write_bytes(bytes(data))

    with pytest.warns(CorruptSegmentWarning, match="part-garbled.parquet"):
        table = predictions(root=tmp_path)

    assert table.column("request_id").to_pylist() == ["r0"]


def test_predictions_rejects_a_bad_window(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        predictions(start="2026-03-02", end="2026-03-01", root=tmp_path)
    with pytest.raises(InvalidInput) as bad:
        predictions(start="yesterday", root=tmp_path)

    assert (err.value.field, bad.value.field) == ("start", "start")


def test_predictions_names_an_unknown_column(tmp_path: Path) -> None:
    fill(tmp_path, [record(0)])

    with pytest.raises(InvalidInput, match="f_nope") as err:
        predictions(root=tmp_path, columns=["f_nope"])

    assert err.value.field == "columns"
    assert predictions(root=tmp_path, columns=["f_tenure"]).column_names == [
        "model",
        "version",
        "f_tenure",
    ]


def _segments_in(root: Path, hour: int) -> list[Path]:
    return sorted(root.glob(f"model=churn/version=1/date=2026-03-01/hour={hour:02d}/*.parquet"))


def _three_segments(root: Path) -> None:
    with PredictionLog(root, flush_interval_s=0.05) as log:
        for i in range(3):
            log.append(record(i, BASE_MS + 10 * (3 - i)))  # out of order on purpose
            assert log.flush()
        log.append(record(9, BASE_MS + HOUR_MS))


def test_compact_merges_a_closed_hour_into_one_sorted_file(tmp_path: Path) -> None:
    _three_segments(tmp_path)
    now = dt.datetime(2026, 3, 1, 11, 30, tzinfo=dt.UTC)  # 10:00 closed, 11:00 open

    report = compact(tmp_path, now=now, grace_s=300)

    assert (report.partitions, report.files_in, report.files_out, report.rows) == (1, 3, 1, 3)
    merged = _segments_in(tmp_path, 10)
    assert len(merged) == 1 and merged[0].name.startswith("compact-")
    assert pq.read_table(merged[0]).column("request_id").to_pylist() == ["r2", "r1", "r0"]
    assert len(_segments_in(tmp_path, 11)) == 1
    assert predictions(root=tmp_path).num_rows == 4


def test_compact_leftover_inputs_are_never_counted_twice(tmp_path: Path) -> None:
    _three_segments(tmp_path)
    inputs = _segments_in(tmp_path, 10)
    saved = tmp_path / "saved"
    saved.mkdir()
    for path in inputs:
        shutil.copy2(path, saved / path.name)
    compact(tmp_path, now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    for path in saved.iterdir():  # a crash after the rename, before the inputs were deleted
        shutil.copy2(path, inputs[0].parent / path.name)

    assert predictions(root=tmp_path).num_rows == 4
    compact(tmp_path, now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    assert [p.name.startswith("compact-") for p in _segments_in(tmp_path, 10)] == [True]


def test_compact_include_open_merges_the_hour_being_written(tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    with PredictionLog(tmp_path, flush_interval_s=0.05) as log:
        for i in range(3):
            log.append(record(i, now_ms))
            assert log.flush()
        assert compact(tmp_path).partitions == 0  # the hour is open
        report = compact(tmp_path, include_open=True)
        log.append(record(3, now_ms))

    files = sorted(tmp_path.glob("model=churn/version=1/date=*/hour=*/*.parquet"))
    assert (report.files_in, report.files_out) == (3, 1)
    assert [f.name.split("-")[0] for f in files] == ["compact", "part"]
    assert sorted(predictions(root=tmp_path).column("request_id").to_pylist()) == [
        "r0",
        "r1",
        "r2",
        "r3",
    ]


def test_predlog_compacts_its_own_segments_in_the_background(tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)

    def parts() -> list[Path]:
        return sorted(tmp_path.glob("model=churn/version=1/date=*/hour=*/part-*.parquet"))

    with PredictionLog(tmp_path, flush_interval_s=0.05, compact_interval_s=0.2) as log:
        for i in range(4):
            log.append(record(i, now_ms))
            assert log.flush()
        deadline = time.monotonic() + 10
        while parts() and time.monotonic() < deadline:
            time.sleep(0.05)

    assert parts() == [] and len(list(tmp_path.rglob("compact-*.parquet"))) >= 1
    assert sorted(predictions(root=tmp_path).column("request_id").to_pylist()) == [
        "r0",
        "r1",
        "r2",
        "r3",
    ]


def cli(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_predictions_list_and_compact(tmp_path: Path) -> None:
    root = tmp_path / "log"
    now_ms = int(time.time() * 1000)
    fill(root, [record(i, now_ms - 1000 * i) for i in range(5)])
    env = {"KEEL_HOME": str(tmp_path / "keel"), "KEEL_PREDICTION_LOG_DIR": str(root)}

    listed = cli(
        env, "predictions", "list", "--model", "churn", "--since", "1h", "--limit", "2", "--json"
    )
    table = cli(env, "predictions", "list", "--version", "1")
    compacted = cli(env, "predictions", "compact", "--json")
    bad = cli(env, "predictions", "list", "--since", "last tuesday")

    assert listed.exit_code == 0, listed.output
    body = json.loads(listed.stdout)
    assert body["truncated"] and [r["request_id"] for r in body["rows"]] == ["r0", "r1"]
    assert table.exit_code == 0 and "r4" in table.stdout
    assert compacted.exit_code == 0 and json.loads(compacted.stdout)["partitions"] == 0
    assert bad.exit_code == 2 and "(field: since)" in bad.stderr


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from keel.serving.predlog import PredictionLog
    from keel.serving.records import PredictionRecord

    log = PredictionLog(Path(sys.argv[1]))  # default flush interval: 0.5 s
    rate = float(sys.argv[2])
    print("ready", flush=True)
    started, sent = time.time(), 0
    while True:
        due = int((time.time() - started) * rate)
        while sent < due:
            log.append(PredictionRecord(
                request_id=str(sent), at_ms=int(time.time() * 1000), model="kill",
                version=1, features={"x": float(sent)}, output=sent % 2, latency_ms=0.1))
            sent += 1
        # acknowledged: every id below `sent` was appended by this time
        sys.stdout.write(f"{sent} {time.time()}\\n")
        sys.stdout.flush()
        time.sleep(0.005)
    """
)


@pytest.mark.timeout(60)
def test_predlog_kill_9_loses_at_most_one_second(tmp_path: Path) -> None:
    window_s = 1.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), "2000"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acks: list[tuple[int, float]] = []
    with child, child.stdout as lines:  # type: ignore[union-attr]
        try:
            assert lines.readline().strip() == "ready"
            reader = threading.Thread(
                target=lambda: acks.extend(
                    (int(n), float(t)) for n, t in (line.split() for line in lines)
                )
            )
            reader.start()
            time.sleep(2.5)
            killed_at = time.time()
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            reader.join(10)
        finally:
            if child.poll() is None:
                child.kill()

    on_disk = {int(r) for r in predictions("kill", root=tmp_path).column("request_id").to_pylist()}
    settled = max((n for n, at in acks if at <= killed_at - window_s), default=0)
    missing = sorted(set(range(settled)) - on_disk)
    sent = max(n for n, _ in acks)
    assert settled > 2000 and missing == [], f"lost {len(missing)} of {settled} settled records"
    assert on_disk <= set(range(sent))  # nothing invented
    lost = sent - len(on_disk)
    print(f"kill -9: {sent} appended, {len(on_disk)} on disk, {lost} lost (≤ {window_s} s)")


def test_an_empty_window_keeps_every_requested_column(tmp_path: Path) -> None:
    """#15.24: predictions(columns=[…]) on an empty window dropped the feature and output
    columns, so selecting them afterwards failed."""
    fill(tmp_path, [record(0, BASE_MS)])
    wanted = ["request_id", "output", "f_tenure", "ts"]

    empty = predictions("nobody", columns=wanted, root=tmp_path)
    same_model_empty = predictions("churn", 1, start="2030-01-01", columns=wanted, root=tmp_path)

    for table in (empty, same_model_empty):
        assert table.num_rows == 0
        assert table.column_names == ["model", "version", *wanted]
        assert list(table.to_pandas()[wanted].columns) == wanted
