"""Feature-store calls of :class:`~keel.client._http.HttpTransport`."""

from __future__ import annotations

import json as jsonlib
from typing import TYPE_CHECKING, Any

from keel.client._http_base import HttpBase, plain
from keel.errors import InvalidInput

# pandas, pyarrow and the feature store load where used: a CLI read command over HTTP
# must not pay for them (#15.14).
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.features.definitions import Definitions
    from keel.features.models import Plan, StoredDefinition

__all__ = ["FEATURE_ROWS_CHUNK", "HttpFeatures"]

#: Rows per request for online lookups and pushes: below the server's per-request caps.
FEATURE_ROWS_CHUNK = 10_000


class HttpFeatures(HttpBase):
    """Feature definitions, historical and online retrieval, pushes and materialisation."""

    def apply_features(self, definitions: Definitions, prune: bool, dry_run: bool) -> Plan:
        from keel.features.models import Plan

        body = {
            "definitions": definitions.model_dump(mode="json"),
            "prune": prune,
            "dry_run": dry_run,
        }
        return self._call("POST", "/v1/features/apply", Plan, json=body)

    def feature_definitions(self, kind: str | None) -> list[StoredDefinition]:
        from keel.features.models import StoredDefinition

        params = {"kind": kind} if kind else {}
        return self._call_list("GET", "/v1/features/definitions", StoredDefinition, params=params)

    def historical_features(
        self,
        entity: pd.DataFrame | pa.Table,
        features: list[str] | str,
        timestamp_column: str,
        full_names: bool,
        engine: str | None,
    ) -> pa.Table:
        from keel.features._frames import to_arrow
        from keel.features.wire import ARROW_STREAM, read_table, write_table

        # The same conversion (and the same naive/aware check) as the embedded path.
        table = to_arrow(entity, "entity_df", (timestamp_column,))
        params: dict[str, Any] = {
            "timestamp_column": timestamp_column,
            "full_names": "true" if full_names else "false",
            "engine": engine,
        }
        params["service" if isinstance(features, str) else "features"] = features
        response = self._request(
            "POST",
            "/v1/features/historical",
            content=write_table(table, ARROW_STREAM),
            params=params,
            headers={"content-type": ARROW_STREAM, "accept": ARROW_STREAM},
        )
        return read_table(response.content, ARROW_STREAM)

    def online_features(
        self, rows: list[dict[str, Any]], features: list[str] | str, full_names: bool
    ) -> list[dict[str, Any]]:
        if not rows:
            raise InvalidInput("no entity rows", field="entity_rows")
        results: list[dict[str, Any]] = []
        for start in range(0, len(rows), FEATURE_ROWS_CHUNK):
            chunk = [
                {k: plain(v) for k, v in row.items()}
                for row in rows[start : start + FEATURE_ROWS_CHUNK]
            ]
            body = {"entity_rows": chunk, "features": features, "full_names": full_names}
            results.extend(
                self._request("POST", "/v1/features/online", json=body).json()["results"]
            )
        return results

    def push_features(self, view: str, rows: pd.DataFrame) -> int:
        # ISO times at µs (tz-aware ones end in Z), NaN as null: what the route reads back.
        records = jsonlib.loads(rows.to_json(orient="records", date_format="iso", date_unit="us"))
        written = 0
        for start in range(0, len(records), FEATURE_ROWS_CHUNK):
            body = {"view": view, "rows": records[start : start + FEATURE_ROWS_CHUNK]}
            written += int(self._request("POST", "/v1/features/push", json=body).json()["rows"])
        return written

    def materialize_features(
        self, start: str | None, end: str, views: list[str] | None
    ) -> dict[str, int]:
        body = {"start": start, "end": end, "views": views}
        response = self._request("POST", "/v1/features/materialize", json=body)
        return {str(k): int(v) for k, v in response.json()["written"].items()}
