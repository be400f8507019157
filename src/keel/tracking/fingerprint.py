"""Content hashes and schemas of datasets (DataFrames and files)."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["TABULAR_FORMATS", "frame_fingerprint", "frame_schema", "read_table", "to_parquet_bytes"]

TABULAR_FORMATS = ("parquet", "csv")


def frame_schema(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Column names, dtypes and null counts."""
    return [
        {"name": str(name), "dtype": str(dtype), "nulls": int(frame[name].isna().sum())}
        for name, dtype in frame.dtypes.items()
    ]


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over column names, dtypes and row values (index excluded).

    Equal frames hash equally whatever file format carried them, so a parquet
    upload and the DataFrame it came from get one content hash.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput("expected a pandas DataFrame", field="data", got=type(frame).__name__)
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\x1f{dtype}\x1e".encode())
    if len(frame.columns):
        try:
            rows = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
        except TypeError as exc:  # unhashable cells (lists, dicts)
            raise InvalidInput(f"dataset has unhashable values: {exc}", field="data") from exc
        digest.update(rows.tobytes())
    digest.update(f"rows={len(frame)}".encode())
    return digest.hexdigest()


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as Parquet bytes (index dropped)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_table(data: bytes, fmt: str) -> pd.DataFrame:
    """Parse Parquet or CSV bytes; a broken file raises :class:`InvalidInput`."""
    try:
        if fmt == "parquet":
            return pd.read_parquet(io.BytesIO(data))
        if fmt == "csv":
            return pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # pandas/pyarrow raise many types for bad files
        raise InvalidInput(f"cannot read {fmt} data: {exc}", field="data") from exc
    raise InvalidInput(f"unknown tabular format {fmt!r}", field="format")
