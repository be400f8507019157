"""Canary debugging (R-DEP-21): canary vs primary per traffic step × slice, so a problem
that appears only at a higher share (30 % but not 5 %) shows where and when it began.

The steps are read back from the deployment's ``rollout_step`` decision records (each
says the share it left and when); within each step's window the numbers come from the
same readers the controller uses: per arm requests, errors, p99 latency and the metric
(:func:`keel.deploy.armstats.read_arm_stats`) for the whole step, and per slice value
(:func:`keel.deploy.segments.read_segment_stats`: the columns asked for, else the policy's
``analysis.segments``, else the default segments) requests, errors and the metric. The
default segments are chosen once over all the steps together
(:func:`keel.deploy.segments.choose_default_splits`), so a numeric input's quartile bins
are the same ranges in every step and "first flagged at" compares like with like.
Differences are tested with keel's A/B tests (:mod:`keel.deploy.armdiff`); every p-value
of the table is then Holm-adjusted together, since many slices × steps tested at once
would otherwise flag some by chance. A row is flagged when an adjusted p-value is below
``alpha`` and the candidate is the worse side (more errors, or a worse metric); a
significant improvement is shown in the numbers but not flagged. Latency is per step
(the log's per-slice latency would repeat the arm's p99 on few rows).

The report's ``attribution`` ranks the input features that explain where the candidate
is worse (:mod:`keel.deploy.attribution`): its bad rows against its good rows, the step a
problem first shows at against the step before, and the permutation importance of the
loss gap between the two arms' models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.decisions.models import Decision
from keel.deploy.armdiff import LOWER_IS_BETTER, compare_errors, compare_metric, holm, to_dict
from keel.deploy.armstats import METRICS, ArmWindow, read_arm_stats
from keel.deploy.attribution import attribute
from keel.deploy.segments import Split, choose_default_splits, read_segment_stats
from keel.deploy.verdict import ArmStats, MetricEstimate
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = ["StepWindow", "debug_canary", "step_windows"]

_MAX_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class StepWindow:
    """One traffic step of a candidate: its share (percent) over ``[from_ms, to_ms)``."""

    step: int
    share: float
    from_ms: int
    to_ms: int


def step_windows(
    records: Sequence[Decision], arm: str, *, start_ms: int, end_ms: int, first_share: float
) -> list[StepWindow]:
    """The candidate's steps from its ``rollout_step`` records (any order): each record closes
    the step it left (``details.step``/``share``) and the last step runs to ``end_ms``.

    >>> step_windows([], "canary", start_ms=0, end_ms=10, first_share=5.0)
    [StepWindow(step=0, share=5.0, from_ms=0, to_ms=10)]
    """
    mine = sorted(
        (r for r in records if r.kind == "rollout_step" and r.details.get("arm") == arm),
        key=lambda r: r.at_ms,
    )
    windows: list[StepWindow] = []
    begin, step, share = start_ms, 0, first_share
    for record in mine:
        details = record.details
        step = int(details.get("step", step))
        share = float(details.get("share", share))
        if record.at_ms > begin:
            windows.append(StepWindow(step, share, begin, record.at_ms))
        begin = record.at_ms
        step += 1
        share = float(details.get("next_share", share))
    if end_ms > begin:
        windows.append(StepWindow(step, share, begin, end_ms))
    return windows


def _numbers(n: int, errors: int, metric: MetricEstimate | None) -> dict[str, Any]:
    return {
        "n": n,
        "errors": errors,
        "error_rate": errors / n if n else None,
        "metric": None
        if metric is None
        else {"value": metric.value, "std_error": metric.std_error, "n": metric.n},
    }


def _estimate(found: dict[str, Any] | None) -> MetricEstimate | None:
    if not found:
        return None
    return MetricEstimate(float(found["value"]), float(found["std_error"]), int(found["n"]))


def _row(
    window: StepWindow,
    column: str | None,
    value: Any,
    primary: tuple[int, int, MetricEstimate | None],
    candidate: tuple[int, int, MetricEstimate | None],
    alpha: float,
) -> dict[str, Any]:
    errors = compare_errors(primary[:2][::-1], candidate[:2][::-1], alpha=alpha)
    metric = compare_metric(primary[2], candidate[2], alpha=alpha)
    return {
        "step": window.step,
        "share": window.share,
        "slice": "all" if column is None else f"{column}={value}",
        "column": column,
        "value": value,
        "primary": _numbers(*primary),
        "candidate": _numbers(*candidate),
        "error_rate_test": to_dict(errors),
        "metric_test": to_dict(metric),
    }


def _resolve(
    service: DeploymentService, name: str, arm: str | None, slices: Sequence[str] | None
) -> tuple[Any, str, str, list[str] | None]:
    """The deployment, its primary, the candidate and the slice columns (None: default)."""
    deployment = service.store.get_deployment(name)
    policy = service.policy_of(deployment)
    primary = str(policy.arm("primary").name)
    candidates = list(deployment.state.get("rollouts", {}))
    chosen = arm or (candidates[0] if candidates else None)
    if chosen is None or chosen not in candidates:
        raise InvalidInput(
            f"arm: {chosen!r} is not a candidate arm of {name!r} (candidates: {candidates})",
            field="arm",
        )
    segments = policy.analysis.segments
    columns = list(slices) if slices else None if segments is None else list(segments)
    return deployment, primary, chosen, columns


def debug_canary(
    service: DeploymentService,
    name: str,
    *,
    arm: str | None = None,
    slices: Sequence[str] | None = None,
    metric: str | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """The step × slice table of deployment ``name``'s candidate ``arm`` (default: its first)
    against the primary, with flagged rows and, per flagged slice, the first step it was
    flagged at, and the feature ``attribution`` (``seed`` draws its permutation sample).
    ``slices``: input columns (default: the policy's ``analysis.segments``, and when it
    does not say, the default segments over all the steps; ``slice_columns`` says which
    were defaulted and a binned one's ``bins``).

    InvalidInput names ``arm``, ``metric``, ``alpha`` or ``slices``; NotFound for an
    unknown deployment.
    """
    deployment, primary, candidate, columns = _resolve(service, name, arm, slices)
    rule = service.policy_of(deployment).guardrails.metric
    chosen = metric or (rule.name if rule is not None else None)
    if chosen is not None and chosen not in METRICS:
        raise InvalidInput(
            f"metric: unknown metric {chosen!r} (known: {', '.join(sorted(METRICS))})",
            field="metric",
        )
    if not 0 < alpha < 1:
        raise InvalidInput("alpha: expected a number in (0, 1)", field="alpha")
    if columns is not None and len(columns) > 20:
        raise InvalidInput("slices: at most 20 columns", field="slices")
    records = service.decision_log.query(deployment=name, kind="rollout_step", limit=_MAX_RECORDS)
    policy = service.policy_of(deployment)
    first = policy.shares[0] if policy.steps else deployment.weights.get(candidate, 0.0)
    finished = deployment.status in ("promoted", "rolled_back", "completed")
    end = deployment.updated_at_ms + 1 if finished else service.clock() + 1
    windows = step_windows(
        records, candidate, start_ms=deployment.created_at_ms, end_ms=end, first_share=first
    )
    rows: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    problems: dict[str, str] = {}
    root = service.predictions_root
    splits = _default_splits(service, deployment.model, name, windows) if columns is None else None
    described = [Split(c) for c in columns] if columns is not None else splits or []
    for window in windows if root is not None else []:
        assert root is not None
        span = ArmWindow(window.from_ms, window.from_ms, window.from_ms, window.to_ms)
        arms = [primary, candidate]
        whole = read_arm_stats(
            root, service.labels, deployment.model, name, arms, span,
            primary=primary, metrics=[chosen] if chosen else [],
        )  # fmt: skip
        p, c = whole[primary], whole[candidate]
        rows.append(_row(window, None, None, _triple(p), _triple(c), alpha))
        latency.append(_latency(window, p, c))
        segments = read_segment_stats(
            root, service.labels, deployment.model, name, arms, span, columns, chosen,
            splits=splits,
        )  # fmt: skip
        for column, table in segments.items():
            if "error" in table:
                problems[column] = table["error"]
            for entry in table["values"]:
                numbers = entry["arms"]
                rows.append(
                    _row(
                        window,
                        column,
                        entry["value"],
                        _from_segment(numbers[primary]),
                        _from_segment(numbers[candidate]),
                        alpha,
                    )
                )
    _flag(rows, alpha, higher_is_better=chosen not in LOWER_IS_BETTER)
    findings = _findings(rows)
    first = min((f["first_flagged_step"] for f in findings), default=None)
    return {
        "deployment": name,
        "model": deployment.model,
        "primary": primary,
        "candidate": candidate,
        "metric": chosen,
        "alpha": alpha,
        "correction": "holm",
        "slices": [s.column for s in described],
        "slice_columns": [
            {"column": s.column, "default": s.default, **({"bins": list(s.bins)} if s.bins else {})}
            for s in described
        ],
        "steps": [
            {"step": w.step, "share": w.share, "from_ms": w.from_ms, "to_ms": w.to_ms}
            for w in windows
        ],
        "latency": latency,
        "rows": rows,
        "findings": findings,
        "slice_errors": problems,
        "attribution": attribute(
            service, deployment, primary, candidate, windows, first, seed=seed
        ),
    }


def _default_splits(
    service: DeploymentService, model: str, name: str, windows: Sequence[StepWindow]
) -> list[Split]:
    """The default segments chosen once over all ``windows`` together: the same columns and
    quartile bins in every step (each step choosing its own would bin differently)."""
    root = service.predictions_root
    if root is None or not windows:
        return []
    start, end = windows[0].from_ms, windows[-1].to_ms
    span = ArmWindow(start, start, start, end)
    return choose_default_splits(root, model, name, span)


def _triple(stats: ArmStats) -> tuple[int, int, MetricEstimate | None]:
    return stats.n, stats.errors, stats.metric


def _from_segment(numbers: dict[str, Any]) -> tuple[int, int, MetricEstimate | None]:
    return int(numbers["n"]), int(numbers["errors"]), _estimate(numbers.get("metric"))


def _latency(window: StepWindow, primary: ArmStats, candidate: ArmStats) -> dict[str, Any]:
    ratio = None
    if primary.p99_latency_ms and candidate.p99_latency_ms is not None:
        ratio = candidate.p99_latency_ms / primary.p99_latency_ms
    return {
        "step": window.step,
        "share": window.share,
        "primary_p99_ms": primary.p99_latency_ms,
        "candidate_p99_ms": candidate.p99_latency_ms,
        "ratio": ratio,
    }


def _flag(rows: list[dict[str, Any]], alpha: float, *, higher_is_better: bool) -> None:
    """Holm-adjust every p-value of the table together; flag rows where the candidate is
    significantly worse (adjusted p below alpha)."""
    found = [
        (i, key, row[key]["pvalue"])
        for i, row in enumerate(rows)
        for key in ("error_rate_test", "metric_test")
        if row[key] is not None
    ]
    adjusted = holm([p for _, _, p in found])
    for row in rows:
        row["flagged"], row["reasons"] = False, []
    for (i, key, _), p_adj in zip(found, adjusted, strict=True):
        rows[i][key]["pvalue_adjusted"] = p_adj
        test = rows[i][key]
        worse = (
            test["difference"] > 0
            if key == "error_rate_test"
            else ((test["difference"] < 0) == higher_is_better)
        )
        if p_adj < alpha and worse and test["difference"] != 0:
            what = "error rate" if key == "error_rate_test" else "metric"
            rows[i]["flagged"] = True
            rows[i]["reasons"].append(
                f"{what} {test['treatment']:.4g} vs {test['control']:.4g} "
                f"(difference {test['difference']:+.4g}, adjusted p={p_adj:.3g})"
            )


def _findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per flagged slice: the first step flagged and whether it was tested clean before."""
    out: list[dict[str, Any]] = []
    for name in dict.fromkeys(r["slice"] for r in rows if r["flagged"]):
        mine = sorted((r for r in rows if r["slice"] == name), key=lambda r: r["step"])
        first = next(r for r in mine if r["flagged"])
        earlier = [r for r in mine if r["step"] < first["step"]]
        out.append(
            {
                "slice": name,
                "first_flagged_step": first["step"],
                "share": first["share"],
                "clean_at_earlier_steps": [r["share"] for r in earlier if not r["flagged"]],
                "reasons": first["reasons"],
            }
        )
    return out
