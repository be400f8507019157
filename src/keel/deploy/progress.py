"""Where each running candidate stands in its current step, and when it can move on.

``GET /v1/deployments/{name}`` (and ``keel deploy show``) answers "what is this rollout
waiting for, and for how long?" without reading the decision log by hand. Per candidate
arm still rolling out:

* the gates of its phase: a canary step's dwell and ``min_samples_per_step``, a shadow
  phase's duration and samples, an A/B's ``min_duration``, blue-green's ``switch_after`` or
  ``verify`` (:func:`keel.deploy.rollout.phase_gates`, the gates the controller checks);
* the controller's latest evaluation of the arm: when, its verdict, action and reasons, the
  candidate's requests in the step and its labelled rows;
* the request rate observed in the step (requests since the step began over the time to
  that evaluation) and from it ``eta_ms``: when both gates are met at that rate (None while
  no request has come in, or when the phase has no gate);
* for a canary or A/B with a sample plan (:mod:`keel.deploy.plan`, R-DEP-04), the
  labelled rows that plan sized for this step, beside those counted so far.

Computed from the stored state and the newest evaluation records only: no log scan, so a
status read stays as cheap as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from keel.deploy.rollout import about, candidate_share, phase_gates
from keel.deploy.state import rollout_from_json

if TYPE_CHECKING:
    from keel.decisions.models import Decision
    from keel.deploy.models import Deployment
    from keel.deploy.policy import DeploymentPolicy
    from keel.deploy.rollout import RolloutState
    from keel.deploy.service import DeploymentService

__all__ = ["describe", "progress_of", "rollout_progress"]

_RUNNING = ("shadow", "live", "switched")
_HOUR_MS = 3_600_000


def _planned(plan: Mapping[str, Any] | None, arm: str, share: float) -> int | None:
    """The labelled rows of ``arm`` the sample plan sized for a step at ``share`` %."""
    for step in (plan or {}).get("steps", []):
        sizes = step.get("samples_per_arm") or {}
        if step.get("arm") == arm and math.isclose(step.get("share", -1), share) and arm in sizes:
            return int(sizes[arm])
    return None


def _latest(evaluations: Sequence[Decision], arm: str, st: RolloutState) -> Decision | None:
    """The newest evaluation of ``arm`` made in its current phase and step."""
    for record in evaluations:  # newest first
        details = record.details or {}
        if (
            details.get("arm") == arm
            and details.get("phase") == st.phase
            and details.get("step") == st.step
            and record.at_ms >= st.phase_started_ms
        ):
            return record
    return None


def _eta(
    wait_s: int | None, needed: int | None, count_from: int, seen: int, at_ms: int | None
) -> tuple[float | None, int | None]:
    """(requests per hour in the step, when both gates are met at that rate)."""
    elapsed_ms = (at_ms - count_from) if at_ms is not None else 0
    rate = seen / elapsed_ms * _HOUR_MS if elapsed_ms > 0 else None
    if wait_s is None:
        return rate, None
    due = count_from + wait_s * 1000
    if needed is not None and seen < needed:
        if not rate or at_ms is None:
            return rate, None
        due = max(due, at_ms + math.ceil((needed - seen) / rate * _HOUR_MS))
    return rate, due


def rollout_progress(
    deployment: Deployment, policy: DeploymentPolicy, evaluations: Sequence[Decision]
) -> dict[str, dict[str, Any]]:
    """Candidate arm → its progress in the current step (module docstring); ``evaluations``
    are the deployment's ``evaluation`` records, newest first. Empty once finished."""
    out: dict[str, dict[str, Any]] = {}
    if deployment.status not in ("active", "paused"):
        return out
    for arm, raw in deployment.state.get("rollouts", {}).items():
        st = rollout_from_json(raw)
        if st.phase not in _RUNNING:
            continue
        share = candidate_share(policy, st)
        wait_s, needed, count_from = phase_gates(policy, st)
        record = _latest(evaluations, arm, st)
        details = (record.details or {}) if record is not None else {}
        candidate = (details.get("numbers") or {}).get("candidate") or {}
        seen = int(candidate.get("n_in_step") or 0)
        metric = candidate.get("metric") or {}
        at = record.at_ms if record is not None else None
        rate, due = _eta(wait_s, needed, count_from, seen, at)
        out[arm] = {
            "phase": st.phase,
            "step": st.step,
            "share": share,
            "since_ms": st.phase_started_ms,
            "wait_s": wait_s,
            "wait_until_ms": None if wait_s is None else count_from + wait_s * 1000,
            "samples": seen,
            "samples_needed": needed,
            "labelled": metric.get("n"),
            "labelled_planned": _planned(deployment.state.get("plan"), arm, share),
            "requests_per_hour": rate,
            "eta_ms": due if deployment.status == "active" else None,
            "awaiting_review": st.awaiting_review,
            "evaluated_at_ms": at,
            "verdict": details.get("verdict"),
            "action": details.get("action"),
            "reasons": list(details.get("reasons") or []),
        }
    return out


def progress_of(service: DeploymentService, deployment: Deployment) -> dict[str, dict[str, Any]]:
    """:func:`rollout_progress` of ``deployment`` with its newest evaluation records."""
    if deployment.status not in ("active", "paused"):
        return {}
    records = service.decision_log.query(
        deployment=deployment.name, kind="evaluation", limit=10 * len(deployment.versions)
    )
    return rollout_progress(deployment, service.policy_of(deployment), records)


def describe(progress: Mapping[str, Mapping[str, Any]] | None, now_ms: int) -> list[str]:
    """Lines for ``keel deploy show``: one per candidate, then its latest reasons."""
    from keel._durations import format_duration_s

    lines = []
    for arm, p in (progress or {}).items():
        parts = [f"{p['phase']} step {p['step']} ({p['share']:g}%)"]
        if p["samples_needed"] is not None:
            parts.append(f"{p['samples']:,}/{p['samples_needed']:,} requests")
        if p["wait_s"] is not None:
            so_far = max(now_ms - p["since_ms"], 0) // 1000
            parts.append(f"{about(so_far)} of {format_duration_s(p['wait_s'])}")
        if p["labelled_planned"] is not None:
            parts.append(f"{p['labelled'] or 0:,}/{p['labelled_planned']:,} labelled (plan)")
        if p["awaiting_review"]:
            parts.append("awaiting a person's review")
        elif p["eta_ms"] is not None:
            left = max(p["eta_ms"] - now_ms, 0) // 1000
            parts.append(f"gates met in ~{about(left)}" if left else "gates met")
        lines.append(f"progress {arm}: " + ", ".join(parts))
        if p["verdict"] is not None:
            lines.append(f"  last evaluation: {p['verdict']} -> {p['action']}")
            lines.extend(f"    {reason}" for reason in p["reasons"])
    return lines
