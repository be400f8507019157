"""Reading reference and current samples from files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from keel.errors import InvalidInput

__all__ = ["read_frame"]


def read_frame(path: Path, *, field: str) -> pd.DataFrame:
    """Read a Parquet or CSV file; a missing or unreadable file is bad input naming ``field``."""
    if not path.is_file():
        raise InvalidInput(f"{field}: no such file: {path}", field=field)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{field}: cannot read {path.name}: {exc}", field=field) from exc
    raise InvalidInput(f"{field}: expected a .parquet or .csv file, got {path.name}", field=field)
