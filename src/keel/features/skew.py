"""Training-serving skew: offline (training) values against values actually served.

Pure functions: frames in, a :class:`SkewReport` out. Numeric features get the
two-sample KS statistic (``scipy.stats.ks_2samp``) and the PSI over ten
quantile bins of the offline values; string/bool features get the PSI over
categories. A feature is skewed when its KS statistic exceeds
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

__all__ = ["FeatureSkew", "SkewReport", "compare_skew", "psi", "psi_categorical"]

_EPS = 1e-4


def psi(reference: Any, current: Any, *, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference`` (numeric).

    Bin edges are the reference's quantiles; empty bins count as ``1e-4``.

    >>> psi([1, 2, 3, 4], [1, 2, 3, 4])
    0.0
    """
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.size == 0 or cur.size == 0:
        raise InvalidInput("psi needs at least one value on each side", field="values")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # constant reference: one bin for it, one for anything else
        ref_share = np.array([1.0, 0.0])
        equal = float(np.mean(cur == edges[0]))
        cur_share = np.array([equal, 1.0 - equal])
    else:
        inner = edges[1:-1]
        ref_share = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=len(edges) - 1)
        cur_share = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(edges) - 1)
        ref_share = ref_share / ref.size
        cur_share = cur_share / cur.size
    return _psi_shares(ref_share, cur_share)


def psi_categorical(reference: Sequence[Any], current: Sequence[Any]) -> float:
    """PSI over the categories seen on either side.

    >>> psi_categorical(["a", "b"], ["a", "b"])
    0.0
    """
    if len(reference) == 0 or len(current) == 0:
        raise InvalidInput("psi needs at least one value on each side", field="values")
    ref = pd.Series(list(reference)).value_counts(normalize=True)
    cur = pd.Series(list(current)).value_counts(normalize=True)
    categories = ref.index.union(cur.index)
    return _psi_shares(
        ref.reindex(categories, fill_value=0.0).to_numpy(dtype=float),
        cur.reindex(categories, fill_value=0.0).to_numpy(dtype=float),
    )


def _psi_shares(ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> float:
    ref = np.clip(ref, _EPS, None)
    cur = np.clip(cur, _EPS, None)
    value = float(np.sum((cur - ref) * np.log(cur / ref)))
    return 0.0 if abs(value) < 1e-12 else value


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
    numeric = pd.api.types.is_numeric_dtype(off) and not pd.api.types.is_bool_dtype(off)
    reasons = []
    ks = pvalue = mean_off = mean_srv = None
    if numeric and pd.api.types.is_numeric_dtype(srv):
        off_values = off.to_numpy(dtype=float)
        srv_values = srv.to_numpy(dtype=float)
        from scipy.stats import ks_2samp  # imported here: scipy.stats takes ~0.5 s to import

        result = ks_2samp(off_values, srv_values)
        ks, pvalue = float(result.statistic), float(result.pvalue)
        value = psi(off_values, srv_values, bins=bins)
        mean_off, mean_srv = float(off_values.mean()), float(srv_values.mean())
        if ks > ks_threshold:
            reasons.append(f"ks {ks:.3f} > {ks_threshold}")
    else:
        numeric = False
        value = psi_categorical(off.astype(str).tolist(), srv.astype(str).tolist())
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
