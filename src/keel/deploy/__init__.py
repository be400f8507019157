"""Deployments (issue #16): policies, arm routing, A/B statistics, verdicts, rollout steps,
and the service, controller and persistence built on them.

The names below load on first use (PEP 562): the SDK imports ``keel.deploy.models`` for
its return types, and a CLI read over HTTP must not pay for scipy (#15.14).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.deploy.policy import DeploymentPolicy, load_policy, parse_policy
    from keel.deploy.rollout import Action, Decision, RolloutState, evaluate, start
    from keel.deploy.routing import Router, bucket_of
    from keel.deploy.verdict import ArmStats, MetricEstimate, Verdict, decide

_WHERE = {
    "Action": "rollout",
    "ArmStats": "verdict",
    "Decision": "rollout",
    "DeploymentPolicy": "policy",
    "MetricEstimate": "verdict",
    "RolloutState": "rollout",
    "Router": "routing",
    "Verdict": "verdict",
    "bucket_of": "routing",
    "decide": "verdict",
    "evaluate": "rollout",
    "load_policy": "policy",
    "parse_policy": "policy",
    "start": "rollout",
}

__all__ = [
    "Action",
    "ArmStats",
    "Decision",
    "DeploymentPolicy",
    "MetricEstimate",
    "RolloutState",
    "Router",
    "Verdict",
    "bucket_of",
    "decide",
    "evaluate",
    "load_policy",
    "parse_policy",
    "start",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'keel.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keel.deploy.{module}"), name)
