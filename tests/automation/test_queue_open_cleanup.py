"""A job queue that cannot open fails ``open_services`` without leaving the store open.

``open_services`` opens the database engine first and the job queue's SQLite file
(:func:`keel.automation.queue.make_huey`) last; when the queue refuses to open, the engine
and whatever else was opened before it are closed before the error reaches the caller.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

import keel.services
from keel.config import Settings
from keel.errors import Unavailable


def _open_files_under(folder: Path) -> list[str]:
    """Files under ``folder`` this process holds open (Linux: /proc/self/fd)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed while listing
            continue
        if target.startswith(f"{folder}{os.sep}"):
            found.append(target)
    return found


def test_a_queue_that_cannot_open_leaves_no_engine_or_file_open(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = tmp_path / "queue" / "jobs-queue.db"
    queue.parent.mkdir()
    queue.write_bytes(b"not a database, " * 512)  # make_huey: Unavailable naming the file
    settings = settings.model_copy(update={"jobs_queue": "sqlite", "jobs_queue_path": queue})
    opened: list[Engine] = []
    disposed: list[Engine] = []
    real_open_engine = keel.services.open_engine

    def open_engine(*args: Any, **kwargs: Any) -> Engine:
        engine = real_open_engine(*args, **kwargs)
        event.listen(engine, "engine_disposed", disposed.append)
        opened.append(engine)
        return engine

    monkeypatch.setattr(keel.services, "open_engine", open_engine)
    with pytest.raises(Unavailable) as raised:
        keel.services.open_services(settings)
    assert str(queue) in raised.value.message and raised.value.field == "KEEL_JOBS_QUEUE_PATH"
    [engine] = opened
    assert disposed == [engine]
    assert engine.pool.checkedout() == 0 and engine.pool.checkedin() == 0
    # SQLite: neither keel.db nor any other file of the home is still held open
    assert _open_files_under(settings.home) == []
