"""Persistent counterfactual holdout (R-DEP-18): the ongoing lift of the champion over a
small group kept on a baseline version, from the prediction log and feedback.

Routing needs no new kind of arm: a holdout is an ``ab`` deployment whose challenger arm,
named ``holdout``, serves the baseline version at a small fixed weight (e.g. 5 %) with
``unit: routing_key`` so the same users stay in it, and which is then paused so the
controller never promotes or rolls it back (a paused deployment keeps its weights; see
docs/deployments.md). This module only reads: per arm the requests, errors and the
chosen metric since the holdout began (:func:`keel.deploy.armstats.read_arm_stats`), and
the champion-minus-holdout differences with their CIs (:mod:`keel.deploy.armdiff`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel._durations import parse_time
from keel.deploy.armdiff import LOWER_IS_BETTER, compare_errors, compare_metric, to_dict
from keel.deploy.armstats import METRICS, ArmWindow, read_arm_stats
from keel.deploy.verdict import ArmStats
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = ["holdout_lift"]


def holdout_lift(
    service: DeploymentService,
    name: str,
    *,
    holdout_arm: str = "holdout",
    champion_arm: str | None = None,
    metric: str | None = None,
    since: str | int | None = None,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The champion's lift over the holdout arm of deployment ``name`` since ``since``
    (default: the deployment's creation): both arms' numbers, the metric difference
    (champion - holdout, with its CI and relative lift; for a lower-is-better metric a
    negative lift is an improvement) and the error-rate difference.

    InvalidInput names ``holdout_arm``/``champion_arm`` (not an arm of the deployment),
    ``metric`` (unknown) or ``since``; NotFound for an unknown deployment.
    """
    deployment = service.store.get_deployment(name)
    policy = service.policy_of(deployment)
    versions = deployment.versions
    champion = champion_arm or str(policy.arm("primary").name)
    for field, arm in (("holdout_arm", holdout_arm), ("champion_arm", champion)):
        if arm not in versions:
            raise InvalidInput(
                f"{field}: {arm!r} is not an arm of {name!r} (arms: {', '.join(versions)})",
                field=field,
            )
    if holdout_arm == champion:
        raise InvalidInput("holdout_arm: must differ from champion_arm", field="holdout_arm")
    rule = policy.guardrails.metric
    chosen = metric or (rule.name if rule is not None else "roc_auc")
    if chosen not in METRICS:
        raise InvalidInput(
            f"metric: unknown metric {chosen!r} (known: {', '.join(sorted(METRICS))})",
            field="metric",
        )
    if not 0 < alpha < 1:
        raise InvalidInput("alpha: expected a number in (0, 1)", field="alpha")
    start_at = parse_time(since, "since")
    start = deployment.created_at_ms if start_at is None else int(start_at.timestamp() * 1000)
    end = service.clock() + 1
    stats: dict[str, ArmStats] = {champion: ArmStats(champion, 0), holdout_arm: ArmStats("", 0)}
    if service.predictions_root is not None:
        stats = read_arm_stats(
            service.predictions_root,
            service.labels,
            deployment.model,
            name,
            [champion, holdout_arm],
            ArmWindow(start, start, start, end),
            primary=holdout_arm,
            metrics=[chosen],
        )
    base, champ = stats[holdout_arm], stats[champion]
    metric_diff = compare_metric(base.metric, champ.metric, alpha=alpha)
    relative = None
    if metric_diff is not None and base.metric is not None and base.metric.value != 0:
        relative = metric_diff.difference / abs(base.metric.value)
    return {
        "deployment": name,
        "model": deployment.model,
        "metric": chosen,
        "higher_is_better": chosen not in LOWER_IS_BETTER,
        "from_ms": start,
        "to_ms": end,
        "champion": {"arm": champion, "version": versions[champion], **champ.numbers()},
        "holdout": {"arm": holdout_arm, "version": versions[holdout_arm], **base.numbers()},
        "lift": to_dict(metric_diff),
        "relative_lift": relative,
        "error_rate_difference": to_dict(
            compare_errors((base.errors, base.n), (champ.errors, champ.n), alpha=alpha)
        ),
        "significant": metric_diff is not None and metric_diff.pvalue < alpha,
    }
