"""A monitor run as one self-contained HTML page (the UI embeds it; it also opens from disk)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from keel.monitoring.models import MonitorRun
from keel.monitoring.stats._binning import numeric_counts, quantile_edges
from keel.ui.charts import bar_pairs

__all__ = ["render_run"]

_env = Environment(
    loader=PackageLoader("keel.ui", "templates"), autoescape=select_autoescape(["html"])
)


def _distribution(reference: pd.Series, current: pd.Series) -> Markup:
    """Bars of the two samples over reference deciles (numbers) or levels (categories)."""
    if pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference):
        ref = reference.dropna().to_numpy(dtype=np.float64)
        cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=np.float64)
        if ref.size == 0:
            return Markup("")
        edges = quantile_edges(np.sort(ref), 10)
        r, c = numeric_counts(ref, edges), numeric_counts(cur, edges)
        labels = [f"≤{e:.3g}" for e in edges] + [f">{edges[-1]:.3g}" if edges.size else "all"]
    else:
        r_counts = reference.astype(str).value_counts()
        c_counts = current.astype(str).value_counts()
        levels = list(r_counts.index[:11]) + [
            v for v in c_counts.index[:3] if v not in r_counts.index[:11]
        ]
        r = r_counts.reindex(levels, fill_value=0).to_numpy(dtype=np.float64)
        c = c_counts.reindex(levels, fill_value=0).to_numpy(dtype=np.float64)
        labels = [str(v) for v in levels]
    r_share = (r / max(r.sum(), 1)).tolist()
    c_share = (c / max(c.sum(), 1)).tolist()
    # bar_pairs escapes every label; the SVG is safe to embed.
    return Markup(bar_pairs(labels, r_share, c_share))  # noqa: S704


def render_run(
    run: MonitorRun,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
) -> str:
    """HTML of one run: verdict, per-feature table, distribution plots when samples are given."""
    charts: dict[str, Any] = {}
    if reference is not None and current is not None:
        for item in run.results.get("drift", []):
            name = item["feature"]
            if name in reference.columns and name in current.columns:
                charts[name] = _distribution(reference[name], current[name])
    template = _env.get_template("monitor_run.html")
    return template.render(run=run, charts=charts)
