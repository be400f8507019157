"""Delayed labels joined to logged predictions: by request id, by entity + time, idempotently."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from keel.errors import InvalidInput
from keel.monitoring.feedback import FeedbackStore
from keel.serving.predlog import PredictionLog
from keel.serving.records import PredictionRecord

NOW_MS = int(time.time() * 1000)


@pytest.fixture
def logged(tmp_path: Path) -> FeedbackStore:
    """Six churn predictions in a real prediction log, one per customer, 1 s apart."""
    root = tmp_path / "predictions"
    with PredictionLog(root, flush_interval_s=0.05) as log:
        for i in range(6):
            log.append(
                PredictionRecord(
                    request_id=f"req-{i}",
                    at_ms=NOW_MS - 60_000 + i * 1_000,
                    model="churn",
                    version=1,
                    features={"tenure": float(i), "plan": "basic"},
                    output=i % 2,
                    latency_ms=1.0,
                    entity_key=f"cust-{i % 3}",
                )
            )
        assert log.flush()
    return FeedbackStore(tmp_path / "feedback", root)


def test_labels_join_by_request_id_with_delay(logged: FeedbackStore) -> None:
    result = logged.submit(
        [{"request_id": "req-0", "label": 1}, {"request_id": "req-1", "label": 0}]
    )
    assert (result.accepted, result.duplicates, result.unknown) == (2, 0, 0)
    frame = logged.labelled("churn")
    assert list(frame["request_id"]) == ["req-0", "req-1"]
    assert list(frame["label_value"]) == [1.0, 0.0]
    assert list(frame["f_tenure"]) == [0.0, 1.0]
    # Predictions were stamped 60-59 s before NOW_MS (taken at import); labels arrive now.
    since_import = time.time() - NOW_MS / 1000
    expected = 60 - frame["f_tenure"] + since_import
    assert (frame["label_delay_s"] - expected).abs().max() < 5


def test_duplicate_feedback_is_idempotent_and_corrections_win(logged: FeedbackStore) -> None:
    logged.submit([{"request_id": "req-2", "label": 0}])
    again = logged.submit(
        [{"request_id": "req-2", "label": 0}, {"request_id": "req-2", "label": 0}]
    )
    assert (again.accepted, again.duplicates) == (0, 2)
    time.sleep(0.01)
    logged.submit([{"request_id": "req-2", "label": 1}])  # a correction
    frame = logged.labelled("churn")
    assert list(frame["label_value"]) == [1.0]
    assert len(list((logged.root).glob("date=*/*.parquet"))) == 2  # history kept, no duplicate


def test_labels_join_by_entity_and_time(logged: FeedbackStore) -> None:
    # cust-1 was scored at -59 s (req-1) and -56 s (req-4); an outcome at -57 s judges req-1.
    event = NOW_MS - 57_000
    logged.submit([{"entity_key": "cust-1", "event_time": event, "label": "churned"}])
    frame = logged.labelled("churn")
    assert list(frame["request_id"]) == ["req-1"]
    assert list(frame["label"]) == ['"churned"']


def test_unknown_request_ids_are_counted_not_fatal(logged: FeedbackStore) -> None:
    result = logged.submit(
        [{"request_id": "req-0", "label": 1}, {"request_id": "nope", "label": 0}]
    )
    assert (result.accepted, result.unknown, result.unknown_examples) == (2, 1, ["nope"])


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"label": 1}], "items[0]: give request_id, or entity_key with event_time"),
        ([{"request_id": "req-0"}], "items[0].label: required"),
        ([{"request_id": "req-0", "label": [1]}], "items[0].label: must be a number, string or"),
        ([{"request_id": "req-0", "label": float("nan")}], "items[0].label: must be finite"),
        ([{"request_id": "r", "label": 1}, {"request_id": 5, "label": 1}], "items[1].request_id"),
        ([{"entity_key": "c", "event_time": "yesterday", "label": 1}], "items[0].event_time"),
        ([{"request_id": "r", "label": 1, "colour": "red"}], "items[0]: unknown fields"),
    ],
)
def test_bad_batches_are_rejected_whole(
    logged: FeedbackStore, items: list[dict], message: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        logged.submit(items)
    assert message in str(error.value)
    assert not logged.root.exists() or not list(logged.root.glob("date=*/*.parquet"))


def test_no_feedback_yet_gives_an_empty_frame(logged: FeedbackStore) -> None:
    assert logged.labelled("churn").empty
