"""The synthetic-case table of ``keel deploy replay --synthetic`` (R-TRK-11)."""

from __future__ import annotations

from typing import Any

from keel.cli._output import console, table

__all__ = ["synthetic_table"]


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def synthetic_table(found: dict[str, Any]) -> None:
    """One row per case kind and version: errors, agreement and PSI/KS against the first
    version, mean score, latency; then the first error of each failing case."""
    console.print(
        f"synthetic: {found['rows_per_case']} rows per case (seed {found['seed']}), agreement "
        f"and psi/ks against v{found['compared_with']}",
        highlight=False,
    )
    table(
        "synthetic cases",
        ["case", "version", "errors", "agreement", "psi", "ks", "mean score", "ms/row", "p99 ms"],
        [
            (case["case"], f"v{v['version']}", f"{v['errors']}/{v['rows_checked']}",
             _num(v["agreement"]), _num(v["psi"]), _num(v["ks"]), _num(v["score_mean"]),
             _num(v["latency_ms"]["batch_per_row"], 4), _num(v["latency_ms"]["p99"]))
            for case in found["cases"]
            for v in case["versions"]
        ],
    )  # fmt: skip
    for case in found["cases"]:
        for v in case["versions"]:
            if v["first_error"]:
                console.print(f"{case['case']} v{v['version']}: {v['first_error']}", markup=False)
