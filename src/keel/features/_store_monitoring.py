"""Monitoring part of ``FeatureStore``: freshness, unused features, training/serving skew."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from keel.features import _materialize
from keel.features._frames import Frame
from keel.features._store_online import OnlineMixin
from keel.features._support import freshness_of, unused_of
from keel.features.models import Freshness, UnusedFeature
from keel.features.skew import SkewReport, compare_skew

__all__ = ["MonitoringMixin"]


class MonitoringMixin(OnlineMixin):
    """Freshness per view, deprecation candidates, skew checks."""

    def freshness(self, views: Sequence[str] | None = None) -> list[Freshness]:
        """Per view: how far it is materialised, when it was written, age vs its SLA."""
        chosen = self._views(views) if views else list(self._fresh().views.values())
        return freshness_of(chosen, self.sql.materializations(), int(self.clock() * 1000))

    def unused_features(self, *, days: int | None = None) -> list[UnusedFeature]:
        """Live features not read offline or online for ``days`` (default: the setting, 90)."""
        self._flush_usage(force=True)
        window = days if days is not None else self.settings.features_deprecate_after_days
        cutoff = int(self.clock() * 1000) - window * 86_400_000
        return unused_of(
            self._fresh().views.values(), self.sql.usage(), cutoff, self.dependent_models
        )

    def check_skew(
        self,
        offline: Frame,
        served: Frame,
        features: Sequence[str] | None = None,
        *,
        ks_threshold: float | None = None,
        psi_threshold: float | None = None,
    ) -> SkewReport:
        """:func:`~keel.features.skew.compare_skew` with the configured thresholds."""
        s = self.settings
        return compare_skew(
            offline,
            served,
            features,
            ks_threshold=ks_threshold if ks_threshold is not None else s.features_skew_ks_threshold,
            psi_threshold=(
                psi_threshold if psi_threshold is not None else s.features_skew_psi_threshold
            ),
            null_rate_threshold=s.features_skew_null_rate_threshold,
        )

    def served_features(
        self, model: str, version: int | None, start: Any = None, end: Any = None
    ) -> pa.Table:
        """Feature values the gateway served (prediction log), one column per feature."""
        return _materialize.served_from_prediction_log(self.settings, model, version, start, end)
