"""R-TRN-23 implicit feedback: a model's signal mapping, signals turned into labels when
they are written, explicit labels winning over implicit ones, over REST and both SDK
transports (the ``client`` fixture runs embedded and against a live uvicorn server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from keel import Client
from keel.cli.models_signals import signals_app
from keel.errors import InvalidInput
from keel.services import Services
from keel.serving._segments import BASE_SCHEMA
from keel.serving.predlog import log_root, partition_dir, write_segment

MAPPING = {"watched": 1, "skipped": 0, "clicked": 1, "dwell_seconds": {"threshold": 30}}
AT_MS = 1_780_000_000_000


def log_requests(svc: Services, ids: list[str]) -> None:
    """``ids`` as logged predictions of churn v1 (one segment, as the gateway writes it)."""
    table = {
        "ts": pa.array([AT_MS + i for i in range(len(ids))], pa.timestamp("ms", tz="UTC")),
        "request_id": ids,
        "output": [0.5] * len(ids),
        "f_tenure": list(range(len(ids))),
    }
    for column in BASE_SCHEMA:
        if column.name not in table:
            table[column.name] = pa.nulls(len(ids), column.type)
    root = partition_dir(log_root(svc.settings), "churn", 1, AT_MS)
    write_segment(pa.table(table), root, f"part-{AT_MS}.parquet")


@pytest.fixture
def churn(services: Services) -> Services:
    services.registry.create_model("churn")
    log_requests(services, [f"r{i}" for i in range(6)])
    return services


def test_signals_become_labels_and_explicit_labels_win(client: Client, churn: Services) -> None:
    assert client.get_signals("churn") is None
    stored = client.set_signals("churn", MAPPING)
    assert stored["dwell_seconds"] == {"threshold": 30.0, "above": 1, "below": 0}
    assert client.get_signals("churn") == stored
    first = client.log_feedback(
        [
            {"request_id": "r0", "model": "churn", "signal": "watched"},
            {"request_id": "r1", "model": "churn", "signal": "skipped"},
            {"request_id": "r2", "model": "churn", "signal": "dwell_seconds", "value": 45},
            {"request_id": "r3", "model": "churn", "signal": "dwell_seconds", "value": 12.5},
            {"request_id": "r4", "label": 1},  # explicit first, then an implicit 0
            {"request_id": "r5", "model": "churn", "signal": "clicked"},
        ]
    )
    assert first["accepted"] == 6
    second = client.log_feedback(
        [
            {"request_id": "r0", "label": 0},  # explicit after implicit: wins
            {"request_id": "r4", "model": "churn", "signal": "skipped"},  # newer, but implicit
            {"request_id": "r5", "label": 1},  # equal to the implicit label: still stored
            {"request_id": "r1", "model": "churn", "signal": "skipped"},  # a duplicate
        ]
    )
    assert (second["accepted"], second["duplicates"]) == (3, 1)
    labelled = churn.feedback.labelled("churn").set_index("request_id")
    got = {rid: (int(row.label_value), row.label_source) for rid, row in labelled.iterrows()}
    assert got == {
        "r0": (0, "explicit"),
        "r1": (0, "implicit"),
        "r2": (1, "implicit"),
        "r3": (0, "implicit"),
        "r4": (1, "explicit"),
        "r5": (1, "explicit"),
    }
    history = churn.feedback.labels()
    dwell = history[history["signal"] == "dwell_seconds"].set_index("request_id")
    assert dwell.loc["r2", "signal_value"] == 45.0 and dwell.loc["r3", "signal_value"] == 12.5
    assert set(history["source"]) == {"explicit", "implicit"}


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"request_id": "r0", "model": "churn", "signal": "liked"}, "items[1].signal"),
        ({"request_id": "r0", "model": "churn", "signal": "dwell_seconds"}, "items[1].value"),
        ({"request_id": "r0", "model": "churn", "signal": "watched", "value": 3}, "items[1].value"),
        ({"request_id": "r0", "signal": "watched"}, "items[1].model"),
        (
            {"request_id": "r0", "model": "churn", "signal": "watched", "label": 1},
            "items[1].signal",
        ),
        ({"request_id": "r0", "value": 3, "label": 1}, "items[1].value"),
        ({"request_id": "r0", "model": "other", "signal": "watched"}, "items[1].signal"),
    ],
)
def test_bad_signal_items_reject_the_batch(
    client: Client, churn: Services, item: dict[str, object], field: str
) -> None:
    client.set_signals("churn", MAPPING)
    with pytest.raises(InvalidInput) as caught:
        client.log_feedback([{"request_id": "r1", "label": 1}, item])
    assert caught.value.field is not None and caught.value.field.startswith(field)
    assert churn.feedback.labels().empty  # nothing of the batch was written


def test_rest_422_names_the_signal_and_bad_mappings(churn: Services, live_server: str) -> None:
    with httpx.Client(base_url=live_server) as http:
        put = http.put("/v1/models/churn/signals", json=MAPPING)
        assert put.status_code == 200, put.text
        bad = http.post(
            "/v1/feedback", json={"items": [{"request_id": "r0", "model": "churn", "signal": "x"}]}
        )
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "items[0].signal"
        ok = http.post(
            "/v1/feedback",
            json={"items": [{"request_id": "r0", "model": "churn", "signal": "watched"}]},
        )
        assert ok.json()["accepted"] == 1
        for mapping, field in (
            ({"dwell": {"threshold": "x"}}, "signals.dwell"),
            ({"dwell": {"threshold": 3, "unit": "s"}}, "signals.dwell"),
            ({"watched": [1]}, "signals.watched"),
            ({}, "signals"),
        ):
            reply = http.put("/v1/models/churn/signals", json=mapping)
            assert reply.status_code == 422, (mapping, reply.text)
            assert reply.json()["error"]["field"].startswith(field), reply.json()
        assert http.get("/v1/models/nope/signals").status_code == 404
    assert churn.feedback.labelled("churn")["label_source"].tolist() == ["implicit"]


def test_cli_sets_and_shows_the_mapping(churn: Services, tmp_path: Path) -> None:
    env = {"KEEL_HOME": str(churn.settings.home)}
    if churn.settings.database_url:  # the PostgreSQL variant: the CLI reads the same store
        env["KEEL_DATABASE_URL"] = churn.settings.database_url
    runner = CliRunner()
    path = tmp_path / "signals.yaml"
    path.write_text("watched: 1\nskipped: 0\ndwell_seconds: {threshold: 30}\n")
    done = runner.invoke(signals_app, ["set", "churn", "-f", str(path), "--json"], env=env)
    assert done.exit_code == 0, done.output
    shown = runner.invoke(signals_app, ["show", "churn"], env=env)
    assert shown.exit_code == 0 and "dwell_seconds" in shown.output
    path.write_text("watched: {threshold: abc}\n")
    bad = runner.invoke(signals_app, ["set", "churn", "-f", str(path)], env=env)
    assert bad.exit_code == 2 and "signals.watched" in bad.output


def test_signals_and_exploration_stored_at_once_keep_each_other(churn: Services) -> None:
    """Both live in the model's tags: each write changes its own tag under the model row's
    lock, so concurrent writers of the two (and of other tags) never undo each other."""
    from concurrent.futures import ThreadPoolExecutor

    from keel.monitoring.signals import get_signals, set_signals
    from keel.serving.exploration import get_exploration, set_exploration

    registry = churn.registry
    registry.update_model("churn", tags={"team": "growth"})

    def signals(i: int) -> None:
        set_signals(registry, "churn", {**MAPPING, "liked": i % 2})

    def exploration(i: int) -> None:
        set_exploration(registry, "churn", {"share": 0.05 + i / 1000, "action": 1})

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(f, i) for i in range(20) for f in (signals, exploration)]:
            future.result()
    tags = registry.get_model("churn").tags
    assert tags["team"] == "growth"
    found = get_signals(registry, "churn")
    assert found is not None and set(found.to_dict()) == {*MAPPING, "liked"}
    policy = get_exploration(registry, "churn")
    assert policy is not None and policy.action == 1
