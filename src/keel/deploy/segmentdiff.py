"""Per-segment differences of a candidate from the primary, and the warnings (R-DEP-15).

Each segment value of a :func:`keel.deploy.segments.read_segment_stats` table gets, per
candidate arm, its ``differences`` from the primary through keel's A/B tests
(:mod:`keel.deploy.armdiff`): the metric by Welch's test on the two estimates, the error
rate by the two-proportion z-test, each with the difference, its CI at the policy's alpha
and the p-value. All p-values of one candidate's table are Holm-adjusted together (many
segments tested at once would otherwise flag some by chance); a comparison is flagged
``worse`` when its adjusted p-value is below alpha and the candidate is the worse side
(lower metric, or higher for :data:`~keel.deploy.armdiff.LOWER_IS_BETTER`; more errors).
:func:`segment_warnings` turns the flags into messages, so a segment where the candidate
is significantly worse shows even when the overall comparison looks fine (seed 001's
"segment heterogeneity"). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from keel.deploy.armdiff import LOWER_IS_BETTER, compare_errors, compare_metric, holm, to_dict
from keel.deploy.verdict import MetricEstimate

__all__ = ["compare_segments", "segment_warnings"]


def _estimate(found: dict[str, Any] | None) -> MetricEstimate | None:
    if not found:
        return None
    return MetricEstimate(float(found["value"]), float(found["std_error"]), int(found["n"]))


def _finite(found: dict[str, Any] | None) -> dict[str, Any] | None:
    # JSON (and PostgreSQL's jsonb) has no NaN or infinity: e.g. Welch's df with no variance
    if found is None:
        return None
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in found.items()
    }


def compare_segments(out: dict[str, Any], arms: Sequence[str], primary: str, alpha: float) -> None:
    """Each value's ``differences`` of every other arm from ``primary``, flagged ``worse``
    by Holm-adjusted p-values (one family per candidate: its whole table)."""
    for arm in (a for a in arms if a != primary):
        tested: list[tuple[dict[str, Any], bool]] = []  # (comparison dict, candidate worse)
        for table in out.values():
            for entry in table["values"]:
                control, treatment = entry["arms"].get(primary), entry["arms"].get(arm)
                if control is None or treatment is None:
                    continue
                metric = compare_metric(
                    _estimate(control["metric"]), _estimate(treatment["metric"]), alpha=alpha
                )
                errors = compare_errors(
                    (control["errors"], control["n"]),
                    (treatment["errors"], treatment["n"]),
                    alpha=alpha,
                )
                found: dict[str, Any] = {
                    "metric": to_dict(metric),
                    "error_rate": to_dict(errors),
                    "worse": False,
                }
                entry.setdefault("differences", {})[arm] = found
                lower = (control["metric"] or {}).get("name") in LOWER_IS_BETTER
                if metric is not None and math.isfinite(metric.pvalue):
                    tested.append((found["metric"], (metric.difference > 0) == lower))
                if errors is not None and math.isfinite(errors.pvalue):
                    tested.append((found["error_rate"], errors.difference > 0))
        adjusted = holm([float(test["pvalue"]) for test, _ in tested])
        for (test, worse), pvalue in zip(tested, adjusted, strict=True):
            test["pvalue_adjusted"] = pvalue
            test["worse"] = worse and pvalue < alpha
        for table in out.values():
            for entry in table["values"]:
                done = entry.get("differences", {}).get(arm)
                if done is not None:
                    done["metric"] = _finite(done["metric"])
                    done["error_rate"] = _finite(done["error_rate"])
                    done["worse"] = any(
                        (done[k] or {}).get("worse", False) for k in ("metric", "error_rate")
                    )


def _describe(label: str, found: dict[str, Any]) -> str:
    level = round(100 * (1 - float(found["alpha"])), 2)
    return (
        f"{label} {found['treatment']:.4g} vs {found['control']:.4g} (difference "
        f"{found['difference']:+.4g}, {level:g}% CI [{found['ci_low']:.4g}, "
        f"{found['ci_high']:.4g}], Holm-adjusted p {found['pvalue_adjusted']:.2g})"
    )


def segment_warnings(segments: dict[str, Any]) -> list[dict[str, Any]]:
    """One warning per value and candidate flagged ``worse`` in ``segments`` (a
    :func:`read_segment_stats` result): ``arm``, ``column``, ``value`` and a ``message``."""
    warnings: list[dict[str, Any]] = []
    for column, table in segments.items():
        for entry in table.get("values", []):
            for arm, found in (entry.get("differences") or {}).items():
                if not found.get("worse"):
                    continue
                name = ((entry["arms"].get(arm) or {}).get("metric") or {}).get("name")
                parts = [
                    _describe(label, found[key])
                    for key, label in (("metric", name or "metric"), ("error_rate", "error rate"))
                    if (found.get(key) or {}).get("worse")
                ]
                warnings.append(
                    {
                        "arm": arm,
                        "column": column,
                        "value": entry["value"],
                        "message": (
                            f"{arm} is significantly worse on segment "
                            f"{column}={entry['value']}: " + "; ".join(parts) + " (R-DEP-15: "
                            "a segment can be worse while the overall comparison looks fine)"
                        ),
                    }
                )
    return warnings
