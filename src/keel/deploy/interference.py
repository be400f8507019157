"""Interference warnings of an experiment (R-DEP-15): when the arms' results are not
independent, so the per-arm numbers may be biased.

Two sources are flagged. A ranking or recommendation model (tag ``task: ranking`` /
``recommendation`` on the version or the model, or a list-valued output in its signature)
compared by A/B at ``unit: request``: one user sees both rankers, and what one arm showed
changes what they click in the other. And any design in which one routing key can be
served by both arms: ``unit: request`` (every request drawn anew) or a canary, whose
widening share moves keys from the primary to the canary between steps.
"""

from __future__ import annotations

from typing import Any

from keel.deploy.policy import DeploymentPolicy
from keel.registry.models import ModelVersion

__all__ = ["RANKING_TASKS", "interference_warnings", "is_ranking"]

RANKING_TASKS = frozenset({"ranking", "recommendation", "recommender", "learning_to_rank"})
_LIST_TYPES = ("list", "array", "sequence")


def is_ranking(version: ModelVersion, model_tags: dict[str, str] | None = None) -> bool:
    """A ranking/recommendation model: by its ``task`` tag or a list-valued output."""
    for tags in (version.tags, model_tags or {}):
        if tags.get("task", "").lower() in RANKING_TASKS:
            return True
    outputs = (version.signature or {}).get("outputs") or []
    return any(str(c.get("type", "")).lower().startswith(_LIST_TYPES) for c in outputs)


def interference_warnings(policy: DeploymentPolicy, ranking: bool) -> list[dict[str, Any]]:
    """The warnings that apply to ``policy`` (``ranking``: see :func:`is_ranking`)."""
    out: list[dict[str, Any]] = []
    live_candidates = policy.strategy in ("canary", "ab", "blue_green")
    if ranking and policy.strategy == "ab" and policy.unit == "request":
        out.append(
            {
                "code": "ranking_interference",
                "message": "a ranking/recommendation model split per request: the same user "
                "sees both rankers, and items shown by one arm change clicks and purchases "
                "credited to the other; randomise by user (unit: routing_key) or interleave",
            }
        )
    elif ranking and live_candidates:
        out.append(
            {
                "code": "ranking_interference",
                "message": "a ranking/recommendation model: arms that share inventory or "
                "positions interact (what one arm promotes the other cannot); compare "
                "with interleaving or a holdout before trusting per-arm lift",
            }
        )
    if live_candidates and policy.unit == "request":
        out.append(
            {
                "code": "shared_routing_key",
                "message": "unit: request draws every request anew, so one routing key is "
                "served by both arms and its outcomes mix the two",
            }
        )
    elif policy.strategy == "canary":
        out.append(
            {
                "code": "shared_routing_key",
                "message": "a canary's widening share moves routing keys from the primary "
                "to the canary between steps, so some keys are served by both arms in turn",
            }
        )
    return out
