"""The artifacts of an ended run are immutable (issue #15 item 5), on both transports."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.client import Client
from keel.errors import Conflict


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_ended_run_refuses_new_and_replaced_artifacts(
    client: Client, tmp_path: Path, status: str
) -> None:
    with client.start_run(experiment="frozen") as run:
        run.log_artifact(_file(tmp_path, "a.txt", "original"), "notes/a.txt")
        run.end(status)
    before = client.list_artifacts(run.id)
    for path in ("notes/a.txt", "notes/b.txt"):  # replace one, add one
        with pytest.raises(Conflict, match="ended run") as caught:
            client.log_artifact(run.id, _file(tmp_path, "x.txt", "swapped"), path)
        assert caught.value.field == "run_id"
    directory = tmp_path / "dir"
    directory.mkdir()
    _file(directory, "c.txt", "more")
    with pytest.raises(Conflict):
        client.log_artifact(run.id, directory, "notes")
    assert client.list_artifacts(run.id) == before


def test_running_run_may_still_replace_its_artifact(client: Client, tmp_path: Path) -> None:
    with client.start_run(experiment="frozen") as run:
        first = client.log_artifact(run.id, _file(tmp_path, "a.txt", "one"), "a.txt")
        second = client.log_artifact(run.id, _file(tmp_path, "a.txt", "two"), "a.txt")
        assert first[0].sha256 != second[0].sha256
        assert [f.sha256 for f in client.list_artifacts(run.id)] == [second[0].sha256]
