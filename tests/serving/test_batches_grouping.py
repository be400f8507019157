"""The prediction log's writer splits a drained batch into one group per partition: the
arms of a deployment (two versions interleaved) are split in C, each version's requests
in their arrival order, exactly as the item-by-item grouping splits them."""

from __future__ import annotations

from typing import Any

from keel.serving._batches import HOUR_MS, _one_group, group_batch
from keel.serving.records import PredictionRecord, ServedRequest

COLUMNS = {1: ["tenure", "charges"], 2: ["tenure", "charges"]}  # one object per version


def _served(i: int, version: int, at_ms: int, columns: Any = None) -> ServedRequest:
    return ServedRequest(
        f"r{i}",
        at_ms,
        "churn",
        version,
        COLUMNS[version] if columns is None else columns,
        [(float(i), 1.0)],
        [i % 2],
        None,
        [False],
        False,
        1.0,
        deployment="dep",
        arm="primary" if version == 1 else "challenger",
    )


def _ids(groups: dict[tuple[Any, ...], list[Any]]) -> dict[tuple[Any, ...], list[str]]:
    return {key: [item.request_id for item in items] for key, items in groups.items()}


def test_two_arms_split_by_version_in_arrival_order() -> None:
    hour = 490_000 * HOUR_MS
    versions = [1, 2, 2, 1, 2, 1, 1, 2]
    batch = [_served(i, v, hour + i) for i, v in enumerate(versions)]
    assert _one_group(batch) is not None  # split in C, not item by item
    groups, invalid = group_batch(batch)
    assert invalid == 0
    layout = ("tenure", "charges")
    assert _ids(groups) == {
        ("churn", 1, 490_000, layout): ["r0", "r3", "r5", "r6"],
        ("churn", 2, 490_000, layout): ["r1", "r2", "r4", "r7"],
    }
    # the same batch grouped item by item (a record in it forces that path) agrees
    record = PredictionRecord("x", hour, "other", 1, {}, 0, 1.0)
    slow, _ = group_batch([*batch, record])
    assert {k: v for k, v in _ids(slow).items() if k[0] == "churn"} == _ids(groups)


def test_one_version_is_one_group_and_mixed_layouts_go_item_by_item() -> None:
    hour = 490_001 * HOUR_MS
    batch = [_served(i, 1, hour + i) for i in range(5)]
    groups, _ = group_batch(batch)
    assert list(_ids(groups).values()) == [["r0", "r1", "r2", "r3", "r4"]]
    # the same version with another layout object (equal names): grouped by value
    other = [_served(5, 1, hour + 5, columns=["tenure", "charges"])]
    groups, _ = group_batch(batch + other)
    assert list(_ids(groups).values()) == [["r0", "r1", "r2", "r3", "r4", "r5"]]
    # two hours: one group per hour
    later = [_served(6, 2, hour + HOUR_MS)]
    groups, _ = group_batch(batch + later)
    assert sorted((k[1], k[2]) for k in groups) == [(1, 490_001), (2, 490_002)]
