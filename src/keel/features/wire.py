"""Tables on the wire: entity rows in, feature columns out, as Arrow IPC streams or Parquet.

The REST route ``POST /v1/features/historical`` and the SDK's HTTP transport
both use these, so the two sides agree on the formats and on the errors.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from keel.errors import InvalidInput

__all__ = ["ARROW_STREAM", "PARQUET", "read_table", "write_table"]

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def read_table(body: bytes, media_type: str) -> pa.Table:
    """A table from an Arrow IPC stream or Parquet body (``InvalidInput`` naming the body)."""
    if not body:
        raise InvalidInput("the body holds no entity rows", field="body")
    try:
        if media_type.startswith(PARQUET):
            return pq.read_table(io.BytesIO(body))
        if media_type.startswith(ARROW_STREAM):
            with pa.ipc.open_stream(body) as reader:
                return reader.read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(
            f"the body is not a valid {media_type} table: {exc}", field="body"
        ) from exc
    raise InvalidInput(
        f"content-type must be {ARROW_STREAM} or {PARQUET}, not {media_type!r}", field="body"
    )


def write_table(table: pa.Table, media_type: str) -> bytes:
    """``table`` as an Arrow IPC stream or Parquet."""
    sink = io.BytesIO()
    if media_type == PARQUET:
        pq.write_table(table, sink)
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()
