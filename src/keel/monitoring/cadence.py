"""Default check cadences of scheduled monitors (R-MON-14's layered detection SLAs).

Seed 001 gives each kind of check its own detection SLA: data freshness 15 min, schema
validation 1 h, feature distributions 4 h, model outputs 1 h, business metrics 24 h.
A monitor runs all of its checks in one run, so when it is scheduled without an explicit
cron it runs at the fastest cadence among the checks it actually has (a monitor without
feature views has no freshness check, one without a label column no performance
check). An explicit cron always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.monitoring.models import MonitorSpec

if TYPE_CHECKING:
    from keel.automation.job_models import Schedule

__all__ = ["CADENCES", "Cadence", "cadences_of", "default_cron", "schedule_monitor"]


@dataclass(frozen=True)
class Cadence:
    """One kind of check, how often it runs by default, and that period as cron (UTC)."""

    check: str
    minutes: int
    cron: str
    what: str


#: R-MON-14, fastest first.
CADENCES: tuple[Cadence, ...] = (
    Cadence("freshness", 15, "*/15 * * * *", "feature views' freshness against their SLA"),
    Cadence("schema", 60, "0 * * * *", "data quality: nulls, ranges, new categories, types"),
    Cadence("outputs", 60, "0 * * * *", "prediction drift of the model's outputs"),
    Cadence("distributions", 240, "0 */4 * * *", "feature drift against the reference"),
    Cadence("business", 1440, "0 0 * * *", "performance on labelled feedback"),
)


def cadences_of(spec: MonitorSpec) -> list[Cadence]:
    """The cadences of the checks ``spec`` runs, fastest first."""
    present = {"schema", "outputs", "distributions"}
    if spec.feature_views:
        present.add("freshness")
    if spec.label_column:
        present.add("business")
    return [c for c in CADENCES if c.check in present]


def default_cron(spec: MonitorSpec) -> str:
    """The cron a monitor without an explicit schedule runs on: its fastest check's."""
    return cadences_of(spec)[0].cron


def schedule_monitor(services: Any, name: str, cron: str | None, actor: str | None) -> Schedule:
    """Schedule monitor ``name`` on ``cron``, or on its default cadence when ``cron`` is
    None: the one place both the REST route and the embedded SDK decide it."""
    if cron is None:
        cron = default_cron(services.monitors.get(name))
    schedule: Schedule = services.jobs.schedule_monitor(name, cron, actor=actor)
    return schedule
