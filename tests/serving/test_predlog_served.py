"""Whole requests in the prediction log: the same rows as records, and the queue bound in rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.serving import PredictionLog, _segments, predictions
from keel.serving._segments import records_to_table, served_to_table
from keel.serving.records import ServedRequest

BASE_MS = 1_772_359_200_000  # 2026-03-01 10:00 UTC
COLUMNS = ("tenure", "lines", "contract", "senior")

# Values as the gateway's validation hands them over: one kind per column, None allowed,
# integers and floats mixed in numeric columns.
_VALUES = {
    "tenure": st.one_of(st.none(), st.floats(allow_nan=False, width=64), st.integers(-5, 5)),
    "lines": st.one_of(st.none(), st.integers(-(2**40), 2**40)),
    "contract": st.one_of(st.none(), st.sampled_from(["Month", "One year", "Two year", ""])),
    "senior": st.one_of(st.none(), st.booleans()),
}


@st.composite
def served_requests(draw: st.DrawFn, index: int) -> ServedRequest:
    n = draw(st.integers(1, 3))
    rows = [tuple(draw(_VALUES[c]) for c in COLUMNS) for _ in range(n)]
    probabilities = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.one_of(st.none(), st.lists(st.floats(0, 1), min_size=2, max_size=2)),
                min_size=n,
                max_size=n,
            ),
        )
    )
    entity_keys = draw(
        st.one_of(
            st.none(), st.lists(st.one_of(st.none(), st.text(max_size=3)), min_size=n, max_size=n)
        )
    )
    return ServedRequest(
        request_id=f"r{index}",
        at_ms=BASE_MS + draw(st.integers(0, 1000)),
        model="churn",
        version=1,
        columns=COLUMNS,
        rows=rows,
        outputs=draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        probabilities=probabilities,
        hits=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        fallback=draw(st.booleans()),
        latency_ms=draw(st.floats(0, 100)),
        entity_keys=entity_keys,
    )


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 6).flatmap(lambda k: st.tuples(*(served_requests(i) for i in range(k)))))
def test_served_requests_make_the_table_their_records_make(
    batch: tuple[ServedRequest, ...],
) -> None:
    served = list(batch)
    records = [record for request in served for record in request.records()]

    from_served = served_to_table("churn", 1, served, {})
    from_records = records_to_table("churn", 1, records, {})

    assert from_served.schema == from_records.schema
    assert from_served.equals(from_records), (from_served.to_pylist(), from_records.to_pylist())


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 3).flatmap(lambda k: st.tuples(*(served_requests(i) for i in range(k)))),
    st.lists(st.integers(0, 2), min_size=2, max_size=12),
)
def test_requests_sharing_rows_make_the_table_their_records_make(
    distinct: tuple[ServedRequest, ...], picks: list[int]
) -> None:
    # Repeated bodies share one parsed rows object (the parse memo): the writer converts
    # it once and gathers; the table must be the one of the records, row by row.
    served = [
        replace(distinct[p % len(distinct)], request_id=f"q{i}", at_ms=BASE_MS + i)
        for i, p in enumerate(picks)
    ]
    records = [record for request in served for record in request.records()]

    from_served = served_to_table("churn", 1, served, {})
    from_records = records_to_table("churn", 1, records, {})

    assert from_served.schema == from_records.schema
    assert from_served.equals(from_records), (from_served.to_pylist(), from_records.to_pylist())


def test_a_hot_key_batch_takes_the_shared_rows_path() -> None:
    one = _request(0, 2)
    served = [replace(one, request_id=f"h{i}") for i in range(50)]
    shared = _segments._shared_rows([s.rows for s in served], [2] * 50)
    assert shared is not None
    rows, positions = shared
    assert rows == list(one.rows) and positions.to_pylist() == [0, 1] * 50
    distinct = [_request(i, 1) for i in range(50)]
    assert _segments._shared_rows([s.rows for s in distinct], [1] * 50) is None


def _request(i: int, rows: int) -> ServedRequest:
    return ServedRequest(
        request_id=f"r{i}",
        at_ms=BASE_MS + i,
        model="churn",
        version=1,
        columns=("tenure", "contract"),
        rows=[(float(i * 10 + j), "Two year") for j in range(rows)],
        outputs=[j % 2 for j in range(rows)],
        probabilities=None,
        hits=[True] * rows,
        fallback=False,
        latency_ms=0.5,
        entity_keys=[f"c{i}-{j}" for j in range(rows)],
    )


def test_served_requests_round_trip_through_the_log(tmp_path: Path) -> None:
    with PredictionLog(tmp_path, flush_interval_s=0.05) as log:
        for i in range(5):
            log.append_served(_request(i, rows=i % 3 + 1))

    logged = predictions("churn", 1, root=tmp_path).to_pylist()
    expected = [
        (f"r{i}", float(i * 10 + j), f"c{i}-{j}") for i in range(5) for j in range(i % 3 + 1)
    ]
    assert sorted((r["request_id"], r["f_tenure"], r["entity_key"]) for r in logged) == expected
    assert all(r["cached"] and r["f_contract"] == "Two year" for r in logged)
    assert log.stats.written == len(expected) and log.stats.segments >= 1


def test_max_queue_counts_rows_of_whole_requests(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_interval_s=60, max_batch=10, max_queue=10)
    try:
        log.append_served(_request(0, rows=4))
        log.append_served(_request(1, rows=4))
        log.append_served(_request(2, rows=4))  # 12 rows would exceed 10: dropped whole
        log.append_served(_request(3, rows=2))  # exactly 10
        assert (log.stats.pending, log.stats.dropped_full) == (10, 4)
    finally:
        log.close()

    assert (log.stats.written, log.stats.pending) == (10, 0)
    ids = set(predictions("churn", 1, root=tmp_path).column("request_id").to_pylist())
    assert ids == {"r0", "r1", "r3"}


def test_append_served_never_raises_and_counts_what_it_refuses(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, flush_interval_s=0.05)
    log.append_served({"request_id": "x"})  # type: ignore[arg-type]
    log.append_served(_request(0, rows=1))
    log.close()
    log.append_served(_request(1, rows=3))

    stats = log.stats
    assert (stats.invalid, stats.written, stats.dropped_closed) == (1, 1, 3)


@pytest.mark.parametrize("rows", [1, 3])
def test_a_bad_served_batch_is_counted_as_failed_rows(tmp_path: Path, rows: int) -> None:
    (tmp_path / "model=churn").write_text("a file where the partition directory goes")
    with PredictionLog(tmp_path, flush_interval_s=0.05) as log:
        log.append_served(_request(0, rows=rows))

    assert (log.stats.failed, log.stats.written) == (rows, 0)
