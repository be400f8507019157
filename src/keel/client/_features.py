"""Feature-store half of :class:`keel.Client`: definitions, point-in-time and online lookups,
pushes and materialisation, the same over the embedded and the HTTP transport."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInput

# Heavy imports (pandas, pyarrow, the feature store) load where used: `import keel`
# and every CLI command import this module (#15.14).
if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from keel.client._transport import Transport
    from keel.features._engine import RetrievalEngine
    from keel.features._frames import Frame
    from keel.features.definitions import Definitions
    from keel.features.models import (
        Entity,
        FeatureService,
        FeatureView,
        Freshness,
        Plan,
        StoredDefinition,
        UnusedFeature,
    )

    DefinitionsInput = Definitions | Iterable[Entity | FeatureView | FeatureService] | str | Path

__all__ = ["FeaturesMixin"]


def _definitions(definitions: DefinitionsInput) -> Definitions:
    from keel.features.definitions import as_definitions, load_yaml

    # Parsed on the caller's side: relative source paths in a YAML file resolve
    # against the file's folder here, before the definitions travel.
    if isinstance(definitions, str | Path):
        return load_yaml(definitions)
    return as_definitions(definitions)


def _times(value: datetime | str, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    raise InvalidInput(f"{field} must be a datetime or an ISO string", field=field)


class FeaturesMixin:
    """Feature-store methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def apply_features(self, definitions: DefinitionsInput, *, prune: bool = True) -> Plan:
        """Store new or changed entities, feature views and services; returns the plan applied.

        ``definitions`` is a YAML file or a list of definition objects; with
        ``prune`` (default) live definitions missing from it are removed.
        """
        return self.transport.apply_features(_definitions(definitions), prune, dry_run=False)

    def plan_features(self, definitions: DefinitionsInput, *, prune: bool = True) -> Plan:
        """What :meth:`apply_features` would change, changing nothing."""
        return self.transport.apply_features(_definitions(definitions), prune, dry_run=True)

    def list_feature_views(self) -> list[FeatureView]:
        """Every live feature view."""
        from keel.features.models import FeatureView

        return [
            FeatureView.model_validate(d.spec)
            for d in self.transport.feature_definitions("feature_view")
        ]

    def list_feature_definitions(self, kind: str | None = None) -> list[StoredDefinition]:
        """Newest live version of every definition (``entity``, ``feature_view``,
        ``feature_service``, or all)."""
        return self.transport.feature_definitions(kind)

    def get_historical_features(
        self,
        entity_df: Frame,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_timestamp",
        full_names: bool = False,
        as_arrow: bool = False,
        engine: RetrievalEngine | None = None,
    ) -> pd.DataFrame | pa.Table:
        """Point-in-time correct features for each entity row.

        The result is ``entity_df`` unchanged plus one column per feature, in
        the same row order. ``features`` is ``["view:feature", "view:*"]`` or a
        feature-service name. Over HTTP the rows travel as an Arrow IPC stream,
        bounded by the server's ``KEEL_MAX_REQUEST_BYTES``.
        """
        import pandas as pd
        import pyarrow as pa

        from keel.features._retrieval import attach

        if not isinstance(entity_df, pd.DataFrame | pa.Table):
            raise InvalidInput(
                "entity_df must be a pandas DataFrame or a pyarrow Table", field="entity_df"
            )
        if not isinstance(features, str):
            features = list(features)
        table = self.transport.historical_features(
            entity_df, features, timestamp_column, full_names, engine
        )
        return attach(entity_df, table, as_arrow)

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str] | str,
        *,
        full_names: bool = False,
    ) -> list[dict[str, Any]]:
        """Latest values for each entity row: its keys plus one entry per feature
        (None when never materialised or older than the view's TTL)."""
        rows = [dict(r) for r in entity_rows]
        if not isinstance(features, str):
            features = list(features)
        return self.transport.online_features(rows, features, full_names)

    def push_features(self, view: str, rows: Frame | Sequence[Mapping[str, Any]]) -> int:
        """Write rows (join keys, the source's timestamp, every feature) online now; rows written.

        Older event times never overwrite newer ones.
        """
        import pandas as pd
        import pyarrow as pa

        if isinstance(rows, pa.Table):
            frame = rows.to_pandas()
        elif isinstance(rows, pd.DataFrame):
            frame = rows
        else:
            frame = pd.DataFrame.from_records([dict(r) for r in rows])
        if frame.empty:
            raise InvalidInput("no rows to push", field="rows")
        return self.transport.push_features(view, frame)

    def materialize_features(
        self, start: datetime | str, end: datetime | str, views: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Copy the latest value per entity with event time in ``[start, end]`` online.

        Returns rows written per view (every online view when ``views`` is None).
        """
        chosen = None if views is None else list(views)
        return self.transport.materialize_features(
            _times(start, "start"), _times(end, "end"), chosen
        )

    def materialize_features_incremental(
        self, end: datetime | str, views: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Materialise each view from where its last run ended (first run: ``end - ttl``)."""
        chosen = None if views is None else list(views)
        return self.transport.materialize_features(None, _times(end, "end"), chosen)

    # ---- inspection (#15.26: what `keel features show|freshness|deprecated|skew` read) ----
    def feature_history(self, name: str) -> list[StoredDefinition]:
        """Every version of one definition, oldest first (``NotFound`` if never applied)."""
        return self.transport.feature_history(name)

    def feature_dependent_models(self, view: str) -> list[str]:
        """Registered models whose versions read this feature view."""
        return self.transport.feature_dependents(view)

    def feature_freshness(self, views: Sequence[str] | None = None) -> list[Freshness]:
        """Per view: materialised until, last write, age against its freshness SLA."""
        return self.transport.feature_freshness(None if views is None else list(views))

    def unused_features(self, days: int | None = None) -> list[UnusedFeature]:
        """Features nobody read offline or online for ``days`` (default the setting, 90)."""
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
            raise InvalidInput("days must be a whole number of days ≥ 1", field="days")
        return self.transport.unused_features(days)

    def check_feature_skew(
        self,
        offline: Frame,
        served: Frame | None = None,
        *,
        model: str | None = None,
        version: int | None = None,
        start: str | None = None,
        end: str | None = None,
        features: Sequence[str] | None = None,
        ks_threshold: float | None = None,
        psi_threshold: float | None = None,
    ) -> dict[str, Any]:
        """Training vs served distributions per feature (KS, PSI, null rates) and a verdict.

        Served values are ``served`` or, with ``model``, read from the prediction log
        (``version``, ``start``, ``end``). Returns the report as a dict (``passed``,
        ``skewed``, ``features``, the thresholds used).
        """
        from pydantic import ValidationError

        from keel._models import invalid_input
        from keel.features.models import SkewOptions

        if (served is None) == (model is None):
            raise InvalidInput("give exactly one of served or model", field="served")
        source = None if model is None else {"model": model, "version": version}
        if source is not None:
            source.update({"start": start, "end": end})
        try:
            options = SkewOptions(
                served_from=source,  # type: ignore[arg-type]
                features=None if features is None else list(features),
                ks_threshold=ks_threshold,
                psi_threshold=psi_threshold,
            )
        except ValidationError as exc:  # the REST body's own checks, on both transports
            raise invalid_input(exc) from None
        return self.transport.feature_skew(
            _pandas(offline, "offline"),
            None if served is None else _pandas(served, "served"),
            None if options.served_from is None else options.served_from.model_dump(),
            options.features,
            {"ks_threshold": options.ks_threshold, "psi_threshold": options.psi_threshold},
        )


def _pandas(data: Frame, field: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data.to_pandas()
    if isinstance(data, pd.DataFrame):
        return data
    raise InvalidInput(f"{field} must be a pandas DataFrame or a pyarrow Table", field=field)
