"""Which decisions are incidents: the one definition, read by the log, the store and docs.

An incident is a decision that says something went wrong in production and a person
should make sure it cannot happen the same way again (R-CICD-13). It stays *open* until
a ``resolution`` record names it; resolving requires a prevention (a gate rule or a
monitor rule, :mod:`keel.decisions.prevention`) or a recorded reason for having none.

Today's incidents, each a (kind, detail condition) row of :data:`INCIDENT_RULES`:

* ``rollback``: a deployment was rolled back (automatically or by a person);
* ``diagnosis`` with ``details.action == "alert"``: a data-quality break or a stale
  upstream raised an alert instead of retraining (R-TRN-21);
* ``retraining`` with ``details.outcome == "quarantined"`` (an incremental batch set
  aside) or ``details.refused == true`` (data validation refused the training data);
* ``alert`` and ``incident``: reserved for the operations package (SLO alerts, incidents
  with timelines), which appends them to this log and reuses the same resolution.

A failed gate is not one: refusing a weaker challenger is the gates working, and every
covariate-shift retraining would otherwise leave an incident behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["INCIDENT_KINDS", "INCIDENT_RULES", "RESOLUTION_KIND", "is_incident"]

#: kind → the ``details`` conditions of which one must hold (key, value); ``()``: always.
INCIDENT_RULES: Mapping[str, tuple[tuple[str, Any], ...]] = {
    "rollback": (),
    "alert": (),
    "incident": (),
    "diagnosis": (("action", "alert"),),
    "retraining": (("outcome", "quarantined"), ("refused", True)),
}

#: Every kind that may be an incident (whether it is depends on :data:`INCIDENT_RULES`).
INCIDENT_KINDS = frozenset(INCIDENT_RULES)

#: The kind of the record that closes an incident.
RESOLUTION_KIND = "resolution"


def is_incident(kind: str, details: Mapping[str, Any]) -> bool:
    """Whether a decision of ``kind`` with ``details`` is an incident."""
    conditions = INCIDENT_RULES.get(kind)
    if conditions is None:
        return False
    return not conditions or any(details.get(key) == value for key, value in conditions)
