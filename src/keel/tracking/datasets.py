"""Dataset versions (R-TRK-06): register a file or DataFrame, get any version back."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from keel._models import now_ms, stored_int
from keel.errors import InvalidInput, NotFound
from keel.store.artifacts import ArtifactStore
from keel.store.sql import SqlStore
from keel.tracking.fingerprint import (
    TABULAR_FORMATS,
    frame_fingerprint,
    frame_schema,
    read_table,
    to_parquet_bytes,
)
from keel.tracking.models import DatasetVersion
from keel.tracking.validation import check_name

__all__ = ["DatasetService", "guess_format"]

_HASH_CHARS = set("0123456789abcdef")


def guess_format(path: str) -> str:
    """``parquet``, ``csv`` or ``file`` from a file name."""
    lowered = path.lower()
    if lowered.endswith((".parquet", ".pq")):
        return "parquet"
    if lowered.endswith((".csv", ".csv.gz")):
        return "csv"
    return "file"


class DatasetService:
    """Named, content-addressed dataset versions stored in the artifact store."""

    def __init__(self, store: SqlStore, artifacts: ArtifactStore) -> None:
        self.store = store
        self.artifacts = artifacts

    def register_frame(
        self,
        name: str,
        frame: pd.DataFrame,
        *,
        description: str | None = None,
        source_uri: str | None = None,
    ) -> DatasetVersion:
        """Store a DataFrame as the next version of ``name`` (same content → same version)."""
        return self.register_bytes(
            name, to_parquet_bytes(frame), "parquet", description=description, source_uri=source_uri
        )

    def register_stream(
        self, name: str, stream: BinaryIO, fmt: str, **kwargs: str | None
    ) -> DatasetVersion:
        """Store uploaded bytes (API path)."""
        return self.register_bytes(name, stream.read(), fmt, **kwargs)

    def register_bytes(
        self,
        name: str,
        data: bytes,
        fmt: str,
        *,
        description: str | None = None,
        source_uri: str | None = None,
    ) -> DatasetVersion:
        """Store ``data`` of format ``parquet``, ``csv`` or ``file``.

        Tabular data is hashed by content (:func:`frame_fingerprint`), other
        files by their bytes.
        """
        check_name(name)
        if fmt not in (*TABULAR_FORMATS, "file"):
            raise InvalidInput(f"format must be parquet, csv or file, not {fmt!r}", field="format")
        schema: list[dict[str, object]] = []
        rows: int | None = None
        if fmt in TABULAR_FORMATS:
            frame = read_table(data, fmt)
            content_hash, schema, rows = frame_fingerprint(frame), frame_schema(frame), len(frame)
        else:
            content_hash = hashlib.sha256(data).hexdigest()
        blob = self.artifacts.put_stream(io.BytesIO(data))
        version, _, _ = self.store.add_dataset_version(
            DatasetVersion(
                name=name,
                version=0,
                content_hash=content_hash,
                blob_sha256=blob.sha256,
                format=fmt,
                schema=schema,
                row_count=rows,
                size_bytes=blob.size_bytes,
                source_uri=source_uri,
                description=description,
                created_at_ms=now_ms(),
            )
        )
        return version

    def get(self, name: str, version: int | None = None) -> DatasetVersion:
        """A version by number, the latest when ``version`` is None; InvalidInput naming
        ``version`` outside 1..MAX_VERSION."""
        number = None if version is None else stored_int(version, "version")
        return self.store.get_dataset_version(check_name(name), number)

    def get_by_hash(self, content_hash: str) -> DatasetVersion:
        """The first version with this content hash (a unique prefix of ≥ 8 chars works too)."""
        lowered = content_hash.lower()
        if len(lowered) < 8 or not set(lowered) <= _HASH_CHARS:
            raise InvalidInput("a content hash is at least 8 hex characters", field="hash")
        if len(lowered) == 64:
            found = self.store.find_dataset_by_hash(lowered)
        else:
            found = [
                v for v in self.store.list_dataset_versions() if v.content_hash.startswith(lowered)
            ]
        if not found:
            raise NotFound(f"no dataset version has hash {content_hash!r}", field="hash")
        return found[0]

    def list(self, name: str | None = None) -> list[DatasetVersion]:
        """All versions, or those of ``name``."""
        return self.store.list_dataset_versions(check_name(name) if name else None)

    def path(self, version: DatasetVersion) -> Path:
        """Local path of the stored bytes of a version."""
        if version.blob_sha256 is None:
            raise NotFound(f"dataset {version.name} v{version.version} has no stored data")
        return self.artifacts.path(version.blob_sha256)

    def load(self, name: str, version: int | None = None) -> pd.DataFrame:
        """A tabular version as a DataFrame."""
        item = self.get(name, version)
        if item.format not in TABULAR_FORMATS:
            raise InvalidInput(f"dataset {name!r} is a {item.format}, not a table", field="name")
        return read_table(self.path(item).read_bytes(), item.format)
