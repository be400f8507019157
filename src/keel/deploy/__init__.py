"""Deployments (issue #16): policies, arm routing, A/B statistics, verdicts and rollout steps.

The pure core, no I/O: the gateway routing, the controller that reads the
prediction log and applies decisions, and the REST/CLI surface build on it.
"""

from keel.deploy.policy import DeploymentPolicy, load_policy, parse_policy
from keel.deploy.rollout import Action, Decision, RolloutState, evaluate, start
from keel.deploy.routing import Router, bucket_of
from keel.deploy.verdict import ArmStats, MetricEstimate, Verdict, decide

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
