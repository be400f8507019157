"""The decision log: every automated or manual decision about a model, with its numbers.

Deployments (rollout steps, evaluations, promotions, rollbacks), automation (trigger
evaluations, diagnoses, retraining, gates) and operations append here; people read it
with ``GET /v1/decisions``, ``client.decisions(...)`` and ``keel decisions``.
"""

from keel.decisions.models import KINDS, Decision, DecisionQuery
from keel.decisions.service import DecisionLog, DecisionStore

__all__ = ["KINDS", "Decision", "DecisionLog", "DecisionQuery", "DecisionStore"]
