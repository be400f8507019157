"""The experiment report of a deployment (R-DEP-17 archived results, R-DEP-15).

One document: the registered hypothesis and its verdict, the analysis settings (method,
α, power, burn-in, attribution window), the numbers per arm and per segment read from the
durable prediction log and labels, the decisions taken, the interference warnings, and —
for a stateful policy — the checkpoints and the rollback's contamination warning.

A running deployment's report is computed on request and labelled ``interim``; the final
one is archived when the deployment ends (:mod:`keel.deploy.reportarchive`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keel.decisions.models import Decision
from keel.deploy.hypothesis import hypothesis_verdict
from keel.deploy.models import FINISHED, Deployment

if TYPE_CHECKING:
    from keel.deploy.armstats import ArmWindow
    from keel.deploy.policy import DeploymentPolicy
    from keel.deploy.service import DeploymentService

__all__ = [
    "compute_report",
    "logged_rows",
    "registered_hypothesis",
    "report_window",
    "to_markdown",
]


def _clean(value: Any) -> Any:
    # JSON (and PostgreSQL's jsonb) has no NaN or infinity: an unknown number is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def registered_hypothesis(deployment: Deployment) -> dict[str, Any] | None:
    """The hypothesis in force: an amendment (made before any traffic) or the policy's."""
    found = deployment.state.get("hypothesis", deployment.policy.get("hypothesis"))
    return found if isinstance(found, dict) else None


def logged_rows(
    service: DeploymentService, deployment: Deployment, arms: Sequence[str], start: int, end: int
) -> dict[str, int]:
    """Arm → predictions of ``deployment`` logged in ``[start, end)`` (0 without a log)."""
    from keel.deploy.armstats import ArmWindow, read_arm_stats

    if service.predictions_root is None or not arms:
        return {a: 0 for a in arms}
    found = read_arm_stats(
        service.predictions_root,
        None,
        deployment.model,
        deployment.name,
        list(arms),
        ArmWindow(start, start, start, end),
        primary=arms[0],
    )
    return {a: found[a].n for a in arms}


def report_window(deployment: Deployment, policy: DeploymentPolicy, end: int) -> ArmWindow:
    """The rows of the report, over the deployment's life: the arm numbers and the
    per-segment ones both read exactly these. R-DEP-15's burn-in cuts after the rollout's
    and every candidate's step starts, and the attribution window, as the controller."""
    from keel.deploy.armstats import ArmWindow
    from keel.deploy.judging import burn_in_cuts
    from keel.deploy.state import rollout_from_json

    start = deployment.created_at_ms
    starts = [start]
    for found in deployment.state.get("rollouts", {}).values():
        st = rollout_from_json(found)
        starts += [st.started_ms, *st.step_starts_ms, st.phase_started_ms]
    analysis = policy.analysis
    return ArmWindow(
        start,
        start,
        start,
        end,
        burn_in=burn_in_cuts(analysis.burn_in_s, starts, end - 1),
        attribution_s=analysis.attribution_window_s,
    )


def _arm_numbers(
    service: DeploymentService, deployment: Deployment, policy: DeploymentPolicy, end: int
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from keel.deploy.segments import read_with_segments

    arms = [str(a.name) for a in policy.arms]
    primary = str(policy.arm("primary").name)
    metrics = [m.name for m in [policy.guardrails.metric, *policy.guardrails.secondary] if m]
    segments: dict[str, Any] = {c: {"values": []} for c in policy.analysis.segments or ()}
    numbers: dict[str, dict[str, Any]] = {a: {"n": 0} for a in arms}
    if service.predictions_root is None:
        return numbers, segments
    # R-DEP-15: the arms and their segments (None: the default columns) over one window
    stats, segments = read_with_segments(
        service.predictions_root,
        service.labels,
        deployment.model,
        deployment.name,
        report_window(deployment, policy, end),
        policy.analysis.segments,
        arms=arms,
        segment_arms=arms,
        primary=primary,
        metrics=metrics,
        alpha=policy.analysis.alpha,
    )
    for arm, found in stats.items():
        numbers[arm] = found.numbers()
        # R-DEP-15: the rows the metric (and every segment) judged, and those left out
        numbers[arm].update(
            n_judged=found.n_judged, burn_in_excluded=found.burn_in_excluded, pending=found.pending
        )
        if numbers[arm]["metric"] is not None:
            numbers[arm]["metric"] = {"name": metrics[0], **numbers[arm]["metric"]}
    return numbers, segments


def _last_evaluations(decisions: list[Decision]) -> dict[str, Decision]:
    out: dict[str, Decision] = {}
    for d in decisions:  # newest first
        arm = d.details.get("arm")
        if d.kind == "evaluation" and isinstance(arm, str) and arm not in out:
            out[arm] = d
    return out


def compute_report(service: DeploymentService, name: str) -> dict[str, Any]:
    """The report computed now (``final`` once finished, else ``interim``)."""
    from keel.deploy.checkpoints import checkpoints, contamination_warning
    from keel.deploy.segmentdiff import segment_warnings

    deployment = service.get(name)
    policy = service.policy_of(deployment)
    finished = deployment.status in FINISHED
    end = (deployment.updated_at_ms if finished else service.clock()) + 1
    decisions = service.decision_log.query(deployment=name, limit=10_000)
    numbers, segments = _arm_numbers(service, deployment, policy, end)
    evaluations = _last_evaluations(decisions)
    hypothesis = registered_hypothesis(deployment)
    verdicts: dict[str, Any] = {}
    for arm, record in evaluations.items():
        check = record.details.get("metric")
        pair = record.details.get("numbers") or {}
        counts = [
            ((pair.get(k) or {}).get("metric") or {}).get("n") for k in ("primary", "candidate")
        ]
        samples = min(int(c) for c in counts if c is not None) if None not in counts else None
        verdicts[arm] = {
            "evaluated_at_ms": record.at_ms,
            "controller_verdict": record.details.get("verdict"),
            "action": record.details.get("action"),
            "metric_check": check,
            "hypothesis": hypothesis_verdict(hypothesis, check, samples),
        }
    versions = deployment.versions
    rollback = next((d for d in decisions if d.kind == "rollback"), None)
    report: dict[str, Any] = {
        "deployment": name,
        "model": deployment.model,
        "strategy": deployment.strategy,
        "status": deployment.status,
        "label": "final" if finished else "interim",
        "generated_at_ms": service.clock(),
        "window": {"from_ms": deployment.created_at_ms, "to_ms": end},
        "hypothesis": hypothesis,
        "analysis": {
            "method": policy.analysis.method,
            "alpha": policy.analysis.alpha,
            "power": policy.analysis.power,
            "planned_samples_per_arm": policy.analysis.planned_samples_per_arm,
            "burn_in_s": policy.analysis.burn_in_s,
            "attribution_window_s": policy.analysis.attribution_window_s,
            "min_duration_s": policy.min_duration_s,
            "unit": policy.unit,
        },
        "arms": [
            {
                "arm": str(a.name),
                "role": a.role,
                "version": versions.get(str(a.name)),
                "weight": deployment.weights.get(str(a.name)),
                **numbers.get(str(a.name), {}),
            }
            for a in policy.arms
        ],
        "segments": segments,
        # R-DEP-15: a segment where a candidate is significantly worse (Holm-adjusted)
        "segment_warnings": segment_warnings(segments),
        "verdicts": verdicts,
        "decisions": [
            {"id": d.id, "at_ms": d.at_ms, "kind": d.kind, "actor": d.actor, "summary": d.summary}
            for d in reversed(decisions)
            if d.kind not in ("evaluation", "checkpoint", "contamination")
        ],
        "evaluations": sum(d.kind == "evaluation" for d in decisions),
        "warnings": deployment.warnings,
    }
    if policy.stateful is not None:
        report["checkpoints"] = checkpoints(service, name)
        if rollback is not None:
            report["contamination_warning"] = contamination_warning(service, name, rollback)
    out: dict[str, Any] = _clean(report)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _segment_lines(column: str, found: dict[str, Any]) -> list[str]:
    """One segment column's table: n and metric per arm; a candidate's row adds its metric
    difference from the primary with the CI, and "worse" when flagged."""
    how = " (default" + (f", quartiles at {found['bins']}" if found.get("bins") else "") + ")"
    lines = [
        "",
        f"## Segment {column}{how if found.get('default') else ''}",
        "| value | arm | n | metric | difference [CI] | flag |",
        "|---|---|---|---|---|---|",
    ]
    for value in found.get("values", []):
        differences = value.get("differences") or {}
        for arm, numbers in value.get("arms", {}).items():
            diff = differences.get(arm) or {}
            test = diff.get("metric") or {}
            shown = (
                f"{_fmt(test.get('difference'))} [{_fmt(test.get('ci_low'))}, "
                f"{_fmt(test.get('ci_high'))}]"
                if test
                else ""
            )
            lines.append(
                f"| {_fmt(value.get('value'))} | {arm} | {_fmt(numbers.get('n'))} "
                f"| {_fmt((numbers.get('metric') or {}).get('value'))} | {shown} "
                f"| {'worse' if diff.get('worse') else ''} |"
            )
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown (``keel deploy report NAME --markdown``)."""
    label = "archived final" if report.get("archived") else report["label"]
    lines = [
        f"# Experiment report: {report['deployment']} ({label})",
        "",
        f"Model `{report['model']}`, strategy {report['strategy']}, status {report['status']}.",
        "",
        "## Hypothesis",
    ]
    hyp = report.get("hypothesis")
    if hyp:
        lines += [
            f"- Statement: {hyp['statement']}",
            f"- Metric: {hyp['metric']}, expected {hyp['direction']} of at least "
            f"{hyp['minimum_effect']:g}{' (relative)' if hyp.get('relative') else ''}",
            f"- Planned samples per arm: {_fmt(hyp.get('planned_samples_per_arm'))}",
            f"- Decision rule: {hyp['decision_rule']}",
        ]
    else:
        lines.append("- none registered")
    for arm, verdict in report["verdicts"].items():
        found = verdict["hypothesis"]
        lines.append(
            f"- Verdict for {arm}: **{found['verdict']}** ({found.get('reason', '')}); "
            f"observed {_fmt(found.get('observed_effect'))}, CI "
            f"[{_fmt(found.get('ci_low'))}, {_fmt(found.get('ci_high'))}]"
        )
    analysis = report["analysis"]
    lines += [
        "",
        "## Analysis",
        f"{analysis['method']}, alpha {analysis['alpha']:g}, power {analysis['power']:g}, "
        f"unit {analysis['unit']}, burn-in {analysis['burn_in_s']} s, attribution window "
        f"{analysis['attribution_window_s']} s.",
        "",
        "## Arms",
        "| arm | role | version | weight % | n | error rate | p99 ms | metric |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in report["arms"]:
        metric = arm.get("metric") or {}
        lines.append(
            f"| {arm['arm']} | {arm['role']} | {_fmt(arm['version'])} | {_fmt(arm['weight'])} "
            f"| {_fmt(arm.get('n'))} | {_fmt(arm.get('error_rate'))} "
            f"| {_fmt(arm.get('p99_latency_ms'))} | {_fmt(metric.get('value'))} |"
        )
    for column, found in report["segments"].items():
        lines += _segment_lines(column, found)
    lines += ["", "## Decisions"]
    lines += [f"- {d['kind']} by {d['actor']}: {d['summary']}" for d in report["decisions"]]
    lines.append(f"- ({report['evaluations']} controller evaluations)")
    warnings = [w["message"] for w in report.get("warnings") or []]
    warnings += [w["message"] for w in report.get("segment_warnings") or []]
    if report.get("contamination_warning"):
        warnings.append(report["contamination_warning"]["message"])
    if warnings:
        lines += ["", "## Warnings", *[f"- {w}" for w in warnings]]
    return "\n".join(lines) + "\n"
