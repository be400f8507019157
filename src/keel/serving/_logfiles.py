"""The files of the prediction log a reader should read (layout: :mod:`keel.serving.predlog`).

Partitions are pruned before a file is opened: only the ``model=``/``version=`` directories
asked for and the ``date=``/``hour=`` directories overlapping the window are listed. Inside
one, the inputs a ``compact-`` file lists in its footer (``keel.compacted_from``) are left
out, and a file whose Parquet magic bytes are missing (torn) is skipped with a warning.
Split from :mod:`keel.serving.predquery`, which re-exports the public names.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import warnings
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "COMPACTED_FROM",
    "HOUR",
    "CorruptSegmentWarning",
    "hour_start",
    "is_complete",
    "live_files",
    "hour_partitions",
    "readable",
    "segment_files",
]

COMPACTED_FROM = b"keel.compacted_from"
_MAGIC = b"PAR1"
HOUR = dt.timedelta(hours=1)


class CorruptSegmentWarning(UserWarning):
    """A prediction-log file is not a complete Parquet file and was left out of a query."""


def hour_start(partition: Path) -> dt.datetime | None:
    try:
        day = dt.date.fromisoformat(partition.parent.name.removeprefix("date="))
        hour = int(partition.name.removeprefix("hour="))
        return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)
    except ValueError:
        return None


def hour_partitions(
    root: Path,
    model: str | None,
    version: int | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> list[Path]:
    model_glob = "model=*" if model is None else f"model={quote(model, safe='')}"
    version_glob = "version=*" if version is None else f"version={int(version)}"
    found = []
    for partition in sorted(root.glob(f"{model_glob}/{version_glob}/date=*/hour=*")):
        begins = hour_start(partition)
        if begins is None:
            continue
        if (start is None or begins + HOUR > start) and (end is None or begins < end):
            found.append(partition)
    return found


def is_complete(path: Path) -> bool:
    """Cheap check of Parquet's leading and trailing magic bytes (a torn file fails it)."""
    try:
        size = path.stat().st_size
        if size < 12:
            return False
        with path.open("rb") as stream:
            head = stream.read(4)
            stream.seek(-4, os.SEEK_END)
            return head == _MAGIC and stream.read(4) == _MAGIC
    except OSError:
        return False


def _warn_corrupt(path: Path, reason: str) -> None:
    warnings.warn(
        f"prediction log: skipping {path} ({reason})", CorruptSegmentWarning, stacklevel=4
    )


def live_files(partition: Path) -> list[Path]:
    """The segments of one partition a reader should read (compacted inputs excluded)."""
    files = sorted(p for p in partition.glob("*.parquet") if not p.name.startswith("."))
    replaced: set[str] = set()
    for path in files:
        if path.name.startswith("compact-") and is_complete(path):
            try:
                meta = pq.read_metadata(path).metadata or {}
            except (OSError, pa.ArrowException):
                continue
            replaced.update(json.loads(meta.get(COMPACTED_FROM, b"[]")))
    return [p for p in files if p.name not in replaced]


def segment_files(
    root: Path,
    model: str | None = None,
    version: int | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[Path]:
    """The complete segment files a query of this window reads; torn ones are warned about."""
    selected = []
    for partition in hour_partitions(root, model, version, start, end):
        for path in live_files(partition):
            if is_complete(path):
                selected.append(path)
            else:
                _warn_corrupt(path, "not a complete Parquet file")
    return selected


def readable(files: list[Path]) -> list[Path]:
    good = []
    for path in files:
        try:
            pq.read_table(path)  # the error path only: decode it all to find the bad file
        except (OSError, pa.ArrowException) as exc:
            _warn_corrupt(path, f"unreadable: {exc}")
        else:
            good.append(path)
    return good
