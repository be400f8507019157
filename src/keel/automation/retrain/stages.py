"""Stage durations of a retraining (R-CICD-12): seconds per stage and its share of the total.

Seed 001's reference for an ML pipeline: 15–45 min in all, data validation 20–30%,
training 40–60%, evaluation 15–25%. The stages here are ``data`` (assembly, row checks,
time split), ``training`` (search and fit), ``evaluation`` (metrics on each split),
``registration`` (model logged and registered) and ``gates`` (validation gates and
promotion).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Stages", "stage_line"]


class Stages:
    """Wall-clock seconds of each pipeline stage of this attempt (R-CICD-12), in order.

    A resumed job measures only what it redid (a reused stage costs its lookup)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (added to its earlier time, if any)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def report(self) -> dict[str, Any]:
        """``{"seconds": {...}, "share": {...}, "total_s": t}``, shares of the total."""
        total = sum(self.seconds.values())
        share = {k: (v / total if total > 0 else 0.0) for k, v in self.seconds.items()}
        return {
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "share": {k: round(v, 4) for k, v in share.items()},
            "total_s": round(total, 4),
        }

    def metrics(self) -> list[dict[str, Any]]:
        """Run metrics ``duration_s.<stage>``, ``duration_share.<stage>``, ``duration_s.total``."""
        body = self.report()
        rows = [{"key": f"duration_s.{k}", "value": v} for k, v in body["seconds"].items()]
        rows += [{"key": f"duration_share.{k}", "value": v} for k, v in body["share"].items()]
        return [*rows, {"key": "duration_s.total", "value": body["total_s"]}]


def stage_line(report: dict[str, Any]) -> str:
    """``data 0.4s (20%), training 1.2s (60%), ...`` for summaries."""
    return ", ".join(
        f"{k} {v:.2f}s ({report['share'][k]:.0%})" for k, v in report["seconds"].items()
    )
