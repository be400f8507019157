"""Offline part of ``FeatureStore``: point-in-time retrieval, in memory or Parquet to Parquet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from keel.features._engine import RetrievalEngine, engine_from
from keel.features._frames import Frame
from keel.features._retrieval import attach, historical, historical_to_parquet
from keel.features._store_definitions import DefinitionsMixin

__all__ = ["OfflineMixin"]


class OfflineMixin(DefinitionsMixin):
    """``get_historical_features`` and ``write_historical_features``."""

    def get_historical_features(
        self,
        entity_df: Frame,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
        as_arrow: bool = False,
        features_only: bool = False,
        engine: RetrievalEngine | None = None,
    ) -> pd.DataFrame | pa.Table:
        """Point-in-time correct features for each entity row (see docs/features.md).

        ``entity_df`` holds the join keys and ``timestamp_column``; the result
        is ``entity_df`` unchanged plus one column per feature, rows in the same
        order (only the feature columns with ``features_only``). ``features`` is
        ``["view:feature", "view:*"]`` or a feature service name. ``engine``
        ``"ray"`` runs the lookups as Ray tasks; the default is
        ``KEEL_FEATURES_ENGINE`` or ``"local"``.
        """
        chosen = engine_from(engine, self.settings.features_engine)
        catalog, selections = self._resolve(features, full_names)
        table = historical(
            catalog,
            entity_df,
            selections,
            timestamp_column=timestamp_column,
            **self._duckdb(),
            engine=chosen,
            ray_address=self.settings.ray_address,
        )
        pairs = [(s.view.name, f) for s in selections for f in s.features]
        self.sql.record_usage(pairs, "offline", int(self.clock() * 1000))
        if features_only:
            return table if as_arrow else table.to_pandas(split_blocks=True, self_destruct=True)
        return attach(entity_df, table, as_arrow)

    def write_historical_features(
        self,
        entity_path: str | Path,
        features: Sequence[str] | str,
        destination: str | Path,
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
    ) -> int:
        """:meth:`get_historical_features` from a Parquet file to a Parquet file; rows written.

        For entity sets larger than memory: DuckDB streams and spills, Python
        never holds the rows. Output rows are in the entity file's order.
        """
        catalog, selections = self._resolve(features, full_names)
        written = historical_to_parquet(
            catalog,
            Path(entity_path),
            Path(destination),
            selections,
            timestamp_column=timestamp_column,
            **self._duckdb(),
        )
        pairs = [(s.view.name, f) for s in selections for f in s.features]
        self.sql.record_usage(pairs, "offline", int(self.clock() * 1000))
        return written
