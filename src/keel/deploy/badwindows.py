"""Leave the predictions of rolled-back arms out of a training set (R-DEP-10).

The prediction log is append-only, so a rollback does not rewrite it: it records the bad
windows (deployment, arm, version, from, to) in SQL, and readers drop the matching rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from keel.deploy.models import BadWindow

__all__ = ["exclude_bad_windows"]


def exclude_bad_windows(logged: pa.Table, windows: Sequence[BadWindow]) -> pa.Table:
    """``logged`` (from :func:`keel.serving.predquery.predictions`, with ``ts``, ``deployment``
    and ``arm`` columns) without the rows of ``windows``; the order is kept.

    >>> import pyarrow as pa
    >>> exclude_bad_windows(pa.table({"ts": [], "deployment": [], "arm": []}), []).num_rows
    0
    """
    if not windows or logged.num_rows == 0:
        return logged
    bad = pa.table(
        {
            "deployment": [w.deployment for w in windows],
            "arm": [w.arm for w in windows],
            "from_ms": [w.from_ms for w in windows],
            "to_ms": [w.to_ms for w in windows],
        }
    )
    with duckdb.connect() as con:
        con.register("logged", logged.append_column("_row", pa.array(range(logged.num_rows))))
        con.register("bad", bad)
        keep = con.sql(
            "SELECT _row FROM logged l WHERE NOT EXISTS (SELECT 1 FROM bad b "
            "WHERE l.deployment = b.deployment AND l.arm = b.arm "
            "AND epoch_ms(l.ts) >= b.from_ms AND epoch_ms(l.ts) < b.to_ms) ORDER BY _row"
        ).fetchnumpy()["_row"]
    return logged.take(pa.array(keep))
