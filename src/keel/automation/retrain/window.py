"""Training-window sanity (R-TRN-21): does the window look like the reference period?

A news recommender retrained on weekend-only rows lost engagement: the rows were fine,
the window was not representative. The checks compare *when* the rows were logged with
when the reference's rows were:

- days of week (rows spanning a week or more): every day the reference usually has must
  be present; without reference times, rows spanning a week or more must hold all seven;
- hours (of the week for rows spanning a week or more, of the day for rows spanning at
  least a day): at least ``min_hours_coverage`` of the reference's usual hours present;
  not checked without reference times (nothing says which hours are usual);
- span: the rows' first-to-last time at least ``min_span`` when that is set.

"Usual" is a day or hour holding at least a fifth of an even share of the reference's
rows, so a handful of stray reference rows at 3 a.m. does not make 3 a.m. required.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from keel.automation.retrain.schema import Violation
from keel.automation.retrain.validation_spec import WindowSpec

__all__ = ["DAYS", "check_window"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_S = 86_400
_WEEK_S = 7 * _DAY_S
#: A day or hour is usual when it holds at least this fraction of an even share.
_USUAL = 0.2


def check_window(
    ts_ms: NDArray[np.int64],
    reference_ts_ms: NDArray[np.int64] | None,
    window_s: int,
    spec: WindowSpec,
) -> tuple[dict[str, Any], list[Violation]]:
    """The window's coverage numbers and the violations (empty when representative).

    ``window_s`` is the length the rows were asked for (the spec's window, shortened by a
    change point), reported beside the rows' own span, which decides what is expected.
    """
    numbers: dict[str, Any] = {"rows": int(ts_ms.size), "window_days": round(window_s / _DAY_S, 3)}
    found: list[Violation] = []
    if ts_ms.size == 0:
        return numbers, found
    span_days = float(ts_ms.max() - ts_ms.min()) / 86_400_000
    numbers["span_days"] = round(span_days, 3)
    if spec.min_span_s is not None and span_days * _DAY_S < spec.min_span_s:
        need = spec.min_span_s / _DAY_S
        found.append(
            Violation(
                "window_span",
                None,
                f"the rows span {span_days:.2f} days, less than min_span {need:g} days",
                span_days,
                need,
            )
        )
    stamps = pd.to_datetime(ts_ms, unit="ms", utc=True)
    ref = None if reference_ts_ms is None else pd.to_datetime(reference_ts_ms, unit="ms", utc=True)
    numbers["reference_times"] = ref is not None and len(ref) > 0
    if ref is not None and len(ref) == 0:
        ref = None
    # what the rows can be expected to cover depends on how long they span: a window cut
    # short by a change point, or rows that stop days before now, are not a week
    span_s = span_days * _DAY_S
    if span_s >= _WEEK_S:
        found += _days(stamps, ref, numbers)
    if span_s >= _DAY_S and ref is not None:
        week = span_s >= _WEEK_S
        found += _hours(stamps, ref, week, spec.min_hours_coverage, numbers)
    return numbers, found


def _days(
    stamps: pd.DatetimeIndex, ref: pd.DatetimeIndex | None, numbers: dict[str, Any]
) -> list[Violation]:
    present = set(stamps.day_of_week.unique().tolist())
    usual = set(range(7)) if ref is None else _usual(ref.day_of_week.to_numpy(), 7)
    shares = np.bincount(stamps.day_of_week.to_numpy(), minlength=7) / len(stamps)
    numbers["day_shares"] = {DAYS[d]: round(float(shares[d]), 4) for d in range(7)}
    missing = sorted(usual - present)
    numbers["days_missing"] = [DAYS[d] for d in missing]
    if not missing:
        return []
    basis = "the reference's usual days" if ref is not None else "rows spanning a week or more"
    names = ", ".join(DAYS[d] for d in missing)
    return [
        Violation(
            "window_days",
            None,
            f"the window has no rows on {names} ({basis}); present: "
            f"{', '.join(DAYS[d] for d in sorted(present))}",
            len(usual & present) / len(usual),
            1.0,
        )
    ]


def _hours(
    stamps: pd.DatetimeIndex,
    ref: pd.DatetimeIndex,
    week: bool,
    minimum: float,
    numbers: dict[str, Any],
) -> list[Violation]:
    cells = 168 if week else 24

    def slots(index: pd.DatetimeIndex) -> NDArray[np.int64]:
        hours: NDArray[np.int64] = index.hour.to_numpy().astype(np.int64)
        if not week:
            return hours
        days: NDArray[np.int64] = index.day_of_week.to_numpy().astype(np.int64)
        return days * 24 + hours

    usual = _usual(slots(ref), cells)
    present = set(slots(stamps).tolist())
    coverage = len(usual & present) / len(usual) if usual else 1.0
    unit = "hours of the week" if week else "hours of the day"
    numbers["hours"] = {
        "unit": unit,
        "usual": len(usual),
        "covered": len(usual & present),
        "coverage": round(coverage, 4),
    }
    if coverage >= minimum:
        return []
    missing = sorted(usual - present)
    return [
        Violation(
            "window_hours",
            None,
            f"the window covers {coverage:.0%} of the reference's usual {unit} "
            f"(min_hours_coverage {minimum:.0%}); missing: {_describe(missing, week)}",
            coverage,
            minimum,
        )
    ]


def _usual(slots: NDArray[Any], cells: int) -> set[int]:
    counts = np.bincount(np.asarray(slots, dtype=np.int64), minlength=cells)
    floor = _USUAL * counts.sum() / cells
    return {int(i) for i in np.flatnonzero((counts > 0) & (counts >= floor))}


def _describe(missing: list[int], week: bool) -> str:
    """``Sat 0-23h, Sun 0-23h`` (or ``0-7h, 20-23h`` for hours of the day)."""
    groups: dict[int, list[int]] = {}
    for slot in missing:
        groups.setdefault(slot // 24 if week else -1, []).append(slot % 24)
    parts = []
    for day, hours in groups.items():
        label = f"{DAYS[day]} " if day >= 0 else ""
        parts.append(label + ", ".join(_runs(hours)) + "h")
    return "; ".join(parts)


def _runs(hours: list[int]) -> list[str]:
    runs: list[list[int]] = []
    for h in hours:
        if runs and h == runs[-1][-1] + 1:
            runs[-1].append(h)
        else:
            runs.append([h])
    return [f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
