"""The sample plan of a rollout (R-DEP-04): how many samples each step needs to detect
the policy's ``min_improvement``, and how long the model's traffic takes to bring them.

Computed once when a canary or A/B deployment is created and stored as ``state.plan``
(the create response and ``GET /v1/deployments/{name}`` return it; ``keel deploy show``
prints it). It never refuses a policy: a step whose ``min_samples_per_step`` is below
its sample, or whose sample takes longer than :data:`LONG_HOURS`, gets a ``warning``.

Per step, the candidate at ``share`` % beside the primary at ``100 - share`` % (an A/B
challenger beside the primary at their weights) is sized with
:mod:`keel.deploy.samplesize` at the policy's ``analysis.alpha``/``analysis.power``
(two-sided), as if the step alone had to show the effect: the controller's estimate
accumulates over the whole rollout, so the numbers are an upper bound for later steps.

* proportions (``accuracy``; ``label_mean`` of 0/1 labels; ``roc_auc`` without labelled
  rows): ``arcsine``, i.e. statsmodels ``NormalIndPower`` for Cohen's h
  (``proportion_effectsize``); a lower-is-better proportion p is sized as 1 - p rising.
* means (``log_loss``, ``brier``, ``mae``, ``mse``, other ``label_mean``) and ``roc_auc``
  with labelled rows: ``normal`` (``zt_ind_solve_power`` for δ/σ), σ the per-row spread
  of the primary's labelled rows (for AUC the Hanley–McNeil standard error × √n).

The baseline is the primary version's metric over its labelled rows of the last
:data:`WINDOW_DAYS` days (at least :data:`MIN_LABELLED`); else the metric logged on the
version's training run (``test_``, ``valid_``, ``val_`` or no prefix; ``auc`` for
``roc_auc``); else 0.5 for a proportion. The traffic rate is every row of the model logged
in those days (all versions, shadow copies included) per hour of the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel._durations import format_duration_s
from keel.errors import InvalidInput, KeelError

if TYPE_CHECKING:
    from keel.deploy.policy import DeploymentPolicy, MetricGuard
    from keel.deploy.samplesize import SampleSize
    from keel.deploy.service import DeploymentService

__all__ = ["LONG_HOURS", "MIN_LABELLED", "WINDOW_DAYS", "Baseline", "describe", "sample_plan"]

WINDOW_DAYS = 7
#: A step expected to need longer than this (4 weeks) gets a warning.
LONG_HOURS = 28 * 24
#: Fewer labelled rows of the primary than this: its measured baseline is not trusted.
MIN_LABELLED = 30
_HOUR_MS = 3_600_000
_PROPORTIONS = frozenset({"accuracy", "label_mean", "roc_auc"})
_RUN_NAMES = {"roc_auc": ("roc_auc", "auc")}
_RUN_PREFIXES = ("test_", "valid_", "val_", "")


@dataclass(frozen=True, slots=True)
class Baseline:
    """The primary's metric value the plan starts from, and how it is sized.

    ``sd`` set: sized as a mean with that per-row spread; else as a proportion.
    ``coverage``: labelled rows per logged row of the primary (None: unknown).
    """

    value: float | None
    source: str  # labelled_rows | training_run | default | none
    labelled_rows: int = 0
    sd: float | None = None
    coverage: float | None = None


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    """``FeedbackStore.labelled`` rows as the columns :mod:`keel.deploy.rowmetrics` reads."""

    def last(p: Any) -> float:
        return float(p[-1]) if p is not None and len(p) else math.nan

    probabilities = frame.get("probabilities", pd.Series([None] * len(frame), index=frame.index))
    return pd.DataFrame(
        {
            "output": frame.get("output"),
            "score": probabilities.map(last).astype(float),
            "y": frame.get("label_value"),
            "t": frame.get("label"),
        }
    )


def _measured(name: str, frame: pd.DataFrame, coverage: float | None) -> Baseline | None:
    """The baseline from the primary's labelled rows; None when too few or undefined."""
    from keel.deploy.abstats import auc_std_error
    from keel.deploy.armstats import metric_estimate
    from keel.deploy.rowmetrics import metric_values, numbers

    if len(frame) < MIN_LABELLED:
        return None
    rows = _rows(frame)
    found = metric_estimate(name, rows)
    if found is None or not math.isfinite(found.value):
        return None
    if name == "roc_auc":
        y = numbers(rows["y"])
        positives = int((y == 1).sum())
        sd = auc_std_error(found.value, positives, found.n - positives) * math.sqrt(found.n)
        return Baseline(found.value, "labelled_rows", found.n, sd, coverage)
    values = metric_values(name, rows)
    assert values is not None  # every metric but roc_auc has per-row values
    values = values[~np.isnan(values)]
    binary = name == "accuracy" or bool(np.isin(values, (0.0, 1.0)).all())
    if binary and name in _PROPORTIONS:
        if not 0 < found.value < 1:
            return None  # one class only: no spread to size with
        return Baseline(found.value, "labelled_rows", found.n, None, coverage)
    return Baseline(found.value, "labelled_rows", found.n, float(values.std(ddof=1)), coverage)


def _from_run(service: DeploymentService, model: str, version: int, name: str) -> float | None:
    """The metric logged on the version's training run (None when not logged)."""
    run_id = service.registry.get_version(model, version).run_id
    if run_id is None:
        return None
    metrics = service.registry.store.get_run(run_id).metrics
    for prefix in _RUN_PREFIXES:
        for key in _RUN_NAMES.get(name, (name,)):
            value = metrics.get(prefix + key)
            if value is not None and math.isfinite(value):
                return float(value)
    return None


def baseline_of(
    service: DeploymentService, model: str, version: int, name: str, now_ms: int
) -> Baseline:
    """The primary version's baseline for metric ``name`` (see the module docstring)."""
    start = now_ms - WINDOW_DAYS * 24 * _HOUR_MS
    coverage: float | None = None
    if service.labels is not None and service.predictions_root is not None:
        frame = service.labels(model, version, start, now_ms)
        logged = _logged(service, model, version, start, now_ms)
        coverage = min(len(frame) / logged, 1.0) if logged else None
        if (found := _measured(name, frame, coverage)) is not None:
            return found
    value = _from_run(service, model, version, name)
    if name in _PROPORTIONS:
        if value is not None and 0 < value < 1:
            return Baseline(value, "training_run", coverage=coverage)
        return Baseline(0.5, "default", coverage=coverage)
    return Baseline(value, "training_run" if value is not None else "none", coverage=coverage)


def _logged(service: DeploymentService, model: str, version: int, start: int, end: int) -> int:
    from keel.serving.predquery import query_log

    def run(con: Any, source: str, params: dict[str, Any]) -> Any:
        return con.sql(f"SELECT count(*) AS n FROM {source}", params=params).to_arrow_table()

    found = query_log(
        run, model, version, start, end, root=service.predictions_root, columns=["ts"]
    )
    return 0 if found is None else int(found.column("n")[0].as_py())


def traffic_per_hour(service: DeploymentService, model: str, now_ms: int) -> float:
    """Rows of ``model`` logged per hour over the last :data:`WINDOW_DAYS` days."""
    from keel.automation.timing import hourly_traffic

    hours = WINDOW_DAYS * 24
    start = now_ms - hours * _HOUR_MS
    return float(hourly_traffic(service.predictions_root, model, start, now_ms).sum()) / hours


def size_step(
    baseline: Baseline, rule: MetricGuard, alpha: float, power: float, ratio: float
) -> SampleSize:
    """Primary-arm samples (``exact``, ``n``) beside a candidate with ``ratio`` times as
    many, to detect ``rule.min_improvement``; InvalidInput when it cannot be sized."""
    from keel.deploy.samplesize import sample_size_means, sample_size_proportions

    if baseline.value is None:
        raise InvalidInput(f"no baseline of {rule.name}", field="baseline")
    delta = rule.min_improvement * (abs(baseline.value) if rule.relative else 1.0)
    if baseline.sd is not None:
        return sample_size_means(
            baseline.sd, delta, mde_kind="absolute", alpha=alpha, power=power, ratio=ratio,
            method="normal",
        )  # fmt: skip
    # Cohen's h of p → p - δ equals that of 1 - p → 1 - p + δ.
    p = baseline.value if rule.higher_is_better else 1 - baseline.value
    return sample_size_proportions(
        p, delta, mde_kind="absolute", alpha=alpha, power=power, ratio=ratio, method="arcsine"
    )


def _comparisons(policy: DeploymentPolicy) -> list[tuple[str, float, float]]:
    """(candidate arm, its share, the primary's share) of each step that compares them."""
    primary = policy.arm("primary")
    if policy.strategy == "canary":
        name = str(policy.arm("canary").name)
        return [(name, s, 100 - s) for s in policy.shares if s < 100]
    if policy.strategy == "ab":
        share = float(primary.weight or 0)
        return [
            (str(a.name), float(a.weight or 0), share)
            for a in policy.arms
            if a.role == "challenger" and a.weight
        ]
    return []


def _hours(hours: float) -> str:
    return f"{hours / 24:,.1f} days" if hours >= 48 else f"{hours:.1f} h"


def sample_plan(
    service: DeploymentService, policy: DeploymentPolicy, versions: dict[str, int], now_ms: int
) -> dict[str, Any] | None:
    """The plan (``state.plan``) of a canary or A/B policy; None for other strategies."""
    steps = _comparisons(policy)
    if not steps:
        return None
    rule, analysis = policy.guardrails.metric, policy.analysis
    if rule is None:
        note = "no guardrails.metric: judged on the safety guardrails only, nothing to size"
        return {"metric": None, "steps": [], "notes": [note]}
    plan: dict[str, Any] = {
        "metric": rule.name,
        "min_improvement": rule.min_improvement,
        "relative": rule.relative,
        "alpha": analysis.alpha,
        "power": analysis.power,
        "steps": [],
        "notes": [],
    }
    if rule.min_improvement == 0:
        plan["notes"].append("min_improvement is 0: no effect to size the samples for")
        return plan
    primary = str(policy.arm("primary").name)
    try:
        base = baseline_of(service, policy.model, versions[primary], rule.name, now_ms)
        rate = traffic_per_hour(service, policy.model, now_ms)
    except KeelError as exc:  # an unreadable log: the plan says so, the create goes on
        plan["notes"].append(f"no plan: {exc}")
        return plan
    delta = rule.min_improvement * (abs(base.value) if rule.relative and base.value else 1.0)
    plan.update(
        effect=delta,
        method="arcsine" if base.sd is None else "normal",
        baseline=base.value,
        baseline_source=base.source,
        labelled_rows=base.labelled_rows,
        sd=base.sd,
        label_coverage=base.coverage,
        traffic_per_hour=rate,
    )
    if not rate:
        plan["notes"].append(
            f"no predictions of {policy.model!r} logged in the last {WINDOW_DAYS} days: "
            "the time per step is unknown"
        )
    if rule.name == "roc_auc" and base.sd is None:
        plan["notes"].append(
            "roc_auc sized as a proportion (balanced classes): with rare positives its "
            "spread is larger and the samples needed grow (Hanley-McNeil)"
        )
    if base.source == "none":
        plan["notes"].append(
            f"{rule.name} needs its spread from the primary's labelled rows "
            f"(at least {MIN_LABELLED} in the last {WINDOW_DAYS} days): no sample size"
        )
    for arm, share, primary_share in steps:
        plan["steps"].append(_step(policy, base, rule, primary, arm, share, primary_share, rate))
    return plan


def _step(
    policy: DeploymentPolicy,
    base: Baseline,
    rule: MetricGuard,
    primary: str,
    arm: str,
    share: float,
    primary_share: float,
    rate: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {"share": share, "arm": arm, "samples_per_arm": None}
    out.update(rows_needed=None, expected_hours=None, warning=None)
    if base.source == "none":
        return out
    ratio = share / primary_share
    try:
        size = size_step(base, rule, policy.analysis.alpha, policy.analysis.power, ratio)
    except InvalidInput as exc:
        out["warning"] = f"cannot size this step: {exc.message}"
        return out
    # The candidate's count is the primary's times ratio, rounded up like samplesize does.
    candidate = math.ceil(float(f"{size.exact * ratio:.9g}"))
    out["samples_per_arm"] = {primary: size.n, arm: candidate}
    rows = math.ceil(candidate / base.coverage) if base.coverage else candidate
    out["rows_needed"] = rows
    warnings = []
    if rate:
        out["expected_hours"] = rows / (rate * share / 100)
        if out["expected_hours"] > LONG_HOURS:
            warnings.append(
                f"{rows:,} {arm} rows take about {_hours(out['expected_hours'])} at "
                f"{rate:.4g} predictions/h, more than {LONG_HOURS // 24} days"
            )
    if policy.strategy == "canary" and policy.min_samples_per_step < rows:
        dwell = format_duration_s(policy.step_dwell_s(policy.shares.index(share)))
        warnings.append(
            f"min_samples_per_step={policy.min_samples_per_step} (with min_dwell {dwell}) lets "
            f"the step advance before the {rows:,} {arm} rows that detect "
            f"{rule.min_improvement:g}{' relative' if rule.relative else ''}: raise "
            f"min_samples_per_step to {rows} to judge the metric at this step"
        )
    out["warning"] = "; ".join(warnings) or None
    return out


def describe(plan: dict[str, Any] | None) -> list[str]:
    """Lines for ``keel deploy show``: the sizing, then one per step."""
    if not plan:
        return []
    lines = []
    if plan.get("metric") and "baseline" in plan:
        kind = " relative" if plan["relative"] else ""
        lines.append(
            f"samples: detect {plan['metric']} +{plan['min_improvement']:g}{kind} at "
            f"alpha={plan['alpha']:g}, power={plan['power']:g} ({plan['method']}); "
            f"baseline {plan['baseline']:.4g} ({plan['baseline_source']}), "
            f"traffic {plan['traffic_per_hour']:.4g}/h"
        )
    for step in plan.get("steps", []):
        sizes = step["samples_per_arm"]
        text = ", ".join(f"{a} {n:,}" for a, n in sizes.items()) if sizes else "not sized"
        hours = step["expected_hours"]
        when = f", ~{_hours(hours)}" if hours is not None else ""
        lines.append(f"  {step['share']:g}%: {text}{when}")
        if step["warning"]:
            lines.append(f"    warning: {step['warning']}")
    lines.extend(f"note: {n}" for n in plan.get("notes", []))
    return lines
