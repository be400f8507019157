"""Training-serving skew: offline (training) values against values actually served.

Pure functions: frames in, a :class:`SkewReport` out. Numeric features get the
two-sample KS statistic and the PSI over ten quantile bins of the offline
values; string/bool features get the PSI over categories. Both statistics are
the monitoring ones (:mod:`keel.monitoring.stats.ks`, :mod:`keel.monitoring.stats.psi`,
empty cells smoothed to 1e-4 and renormalised), so a PSI threshold means the
same thing in a skew check and in a drift monitor. A feature is skewed when its KS statistic exceeds
``ks_threshold`` or its PSI exceeds ``psi_threshold`` (the KS *statistic*,
not the p-value: with thousands of rows every tiny difference is
"significant"). Nulls are not part of the distributions; their rates are
reported and compared against ``null_rate_threshold``, because "training
filled NaN with the mean, serving with 0" is skew too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from keel.errors import InvalidInput

__all__ = ["FeatureSkew", "SkewReport", "compare_skew"]


@dataclass(frozen=True)
class FeatureSkew:
    """Skew statistics of one feature."""

    feature: str
    kind: str  # "numeric" or "categorical"
    n_offline: int
    n_served: int
    psi: float
    ks: float | None
    ks_pvalue: float | None
    null_rate_offline: float
    null_rate_served: float
    mean_offline: float | None
    mean_served: float | None
    is_skewed: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class SkewReport:
    """Per-feature skew and the thresholds used; ``passed`` makes it a validation gate."""

    features: tuple[FeatureSkew, ...]
    ks_threshold: float
    psi_threshold: float
    null_rate_threshold: float
    skewed: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """True when no feature is skewed."""
        return not self.skewed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "passed": self.passed,
            "skewed": list(self.skewed),
            "ks_threshold": self.ks_threshold,
            "psi_threshold": self.psi_threshold,
            "null_rate_threshold": self.null_rate_threshold,
            "features": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(f).items()}
                for f in self.features
            ],
        }


def _frame(data: Any, what: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pa.Table):
        return data.to_pandas()
    raise InvalidInput(f"{what} must be a pandas DataFrame or a pyarrow Table", field=what)


def compare_skew(
    offline: pd.DataFrame | pa.Table,
    served: pd.DataFrame | pa.Table,
    features: Sequence[str] | None = None,
    *,
    ks_threshold: float = 0.1,
    psi_threshold: float = 0.2,
    null_rate_threshold: float = 0.05,
    bins: int = 10,
) -> SkewReport:
    """Compare each feature's offline and served distribution.

    ``features`` defaults to the columns both frames share. Raises
    ``InvalidInput`` when a feature is missing on one side or has no non-null
    value on one side (nothing to compare).
    """
    for name, value in (("ks_threshold", ks_threshold), ("psi_threshold", psi_threshold)):
        if not value > 0:
            raise InvalidInput(f"{name} must be positive", field=name, value=value)
    left, right = _frame(offline, "offline"), _frame(served, "served")
    names = list(features) if features is not None else [c for c in left if c in right.columns]
    if not names:
        raise InvalidInput("offline and served share no feature column", field="features")
    results = []
    for name in names:
        for side, frame in (("offline", left), ("served", right)):
            if name not in frame.columns:
                raise InvalidInput(f"{side} data has no column {name!r}", field=name)
        results.append(
            _one(
                name,
                left[name],
                right[name],
                ks_threshold,
                psi_threshold,
                null_rate_threshold,
                bins,
            )
        )
    return SkewReport(
        features=tuple(results),
        ks_threshold=ks_threshold,
        psi_threshold=psi_threshold,
        null_rate_threshold=null_rate_threshold,
        skewed=tuple(r.feature for r in results if r.is_skewed),
    )


def _one(
    name: str,
    offline: pd.Series[Any],
    served: pd.Series[Any],
    ks_threshold: float,
    psi_threshold: float,
    null_rate_threshold: float,
    bins: int,
) -> FeatureSkew:
    null_off = float(offline.isna().mean()) if len(offline) else 0.0
    null_srv = float(served.isna().mean()) if len(served) else 0.0
    off, srv = offline.dropna(), served.dropna()
    if off.empty or srv.empty:
        side = "offline" if off.empty else "served"
        raise InvalidInput(f"feature {name!r} has no non-null {side} value", field=name)
    # imported here: the statistics import scipy.stats (~0.5 s), which most commands skip
    from keel.monitoring.stats.ks import ks_sorted
    from keel.monitoring.stats.psi import psi

    numeric = pd.api.types.is_numeric_dtype(off) and not pd.api.types.is_bool_dtype(off)
    reasons = []
    ks = pvalue = mean_off = mean_srv = None
    if numeric and pd.api.types.is_numeric_dtype(srv):
        off_values = off.to_numpy(dtype=float)
        srv_values = srv.to_numpy(dtype=float)
        ks, pvalue = ks_sorted(np.sort(off_values), np.sort(srv_values))
        value = float(psi(off_values, srv_values, bins=bins).statistic)
        mean_off, mean_srv = float(off_values.mean()), float(srv_values.mean())
        if ks > ks_threshold:
            reasons.append(f"ks {ks:.3f} > {ks_threshold}")
    else:
        numeric = False
        categories = (
            off.astype(str).to_numpy(dtype=object),
            srv.astype(str).to_numpy(dtype=object),
        )
        value = float(psi(*categories).statistic)
    if value > psi_threshold:
        reasons.append(f"psi {value:.3f} > {psi_threshold}")
    if abs(null_off - null_srv) > null_rate_threshold:
        reasons.append(f"null rate {null_off:.3f} offline vs {null_srv:.3f} served")
    return FeatureSkew(
        feature=name,
        kind="numeric" if numeric else "categorical",
        n_offline=int(off.size),
        n_served=int(srv.size),
        psi=value,
        ks=ks,
        ks_pvalue=pvalue,
        null_rate_offline=null_off,
        null_rate_served=null_srv,
        mean_offline=mean_off,
        mean_served=mean_srv,
        is_skewed=bool(reasons),
        reasons=tuple(reasons),
    )
