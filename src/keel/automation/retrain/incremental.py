"""Continuous/online retraining (R-TRN-09): ``retrain.run`` with ``mode: incremental``.

Each run takes only the labels received since the model's high-water mark
(:mod:`keel.automation.retrain.marks`), checks them (:mod:`keel.automation.retrain.labelguard`),
and either quarantines the batch — recorded with its numbers, never trained on, the
champion untouched — or updates a copy of the champion with ``partial_fit`` (or the
spec's ``update(model, frame, params)``) on the batch's older part, registers it as the
next version with lineage (parent version, rows, marks) and runs the validation gates on
the batch's newest part, by default with a no-regression margin against the champion.

Like a full retraining it lives on a tracking run found again by the job's key, so a job
re-delivered after a kill -9 resumes with the same rows and registers at most once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from keel._models import now_ms
from keel.automation.retrain import marks, promotion
from keel.automation.retrain.data import TS_COLUMN, TrainingData, assemble, model_frame
from keel.automation.retrain.data import _labels as label_values
from keel.automation.retrain.labelguard import GuardReport, check_labels
from keel.automation.retrain.pipeline import (
    KEY_TAG,
    RESULT_FILE,
    STAGE_TAG,
    _fail,
    _find_run,
    _register,
    _related,
    _run_params,
    _save_result,
    job_key,
)
from keel.automation.retrain.spec import JobArgs, parse_job_args
from keel.automation.retrain.stages import Stages, stage_line
from keel.automation.retrain.training import evaluate
from keel.automation.retrain.updaters import apply_update
from keel.executors import check_cancelled, open_executor
from keel.tracking.models import Run, RunInput, RunStatus

__all__ = ["run_incremental"]

log = logging.getLogger("keel.retrain")


def run_incremental(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """One incremental update of the model (see the module docstring)."""
    job = parse_job_args(args)
    key, spec = job_key(args), job.retrain
    experiment = spec.experiment or f"retrain-{job.model}"
    run = _find_run(services, experiment, key)
    if run is not None and run.tags.get(STAGE_TAG) == "done":
        _, path = services.tracking.artifact_file(run.id, RESULT_FILE)
        done: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return done
    if run is None:
        lookback = spec.incremental.guard.recent_window_s * 1000
        found = marks.claims(services, experiment, job.model, lookback)
        # label receipt is stamped by the wall clock, so the mark is on the wall clock too
        bounds = (found.claimed_ms, now_ms() - spec.incremental.settle_s * 1000)
        if bounds[1] <= bounds[0]:
            return _waiting(job, bounds, 0)
        now = services.jobs.clock()
        batch = assemble(services, job.model, spec, job.data, now, bounds)
        if len(batch.frame) < spec.min_rows:
            return _waiting(job, bounds, len(batch.frame))
        run = services.tracking.create_run(
            experiment,
            name=f"incremental {job.model}",
            tags={
                KEY_TAG: key,
                STAGE_TAG: "started",
                "keel.retrain.model": job.model,
                marks.MODEL_TAG: job.model,
                marks.FROM_TAG: str(bounds[0]),
                marks.TO_TAG: str(bounds[1]),
            },
            params={**_run_params(job), "mode": "incremental"},
        )
        earlier = marks.superseded(services, experiment, job.model, run)
        if earlier is not None:
            services.tracking.log_batch(run.id, tags={STAGE_TAG: "superseded"})
            services.tracking.finish_run(run.id, RunStatus.KILLED)
            return {"model": job.model, "outcome": "superseded", "by_run": earlier.id}
        frame, counts = _store_rows(services, job, run, batch), batch.counts()
    else:
        log.info("resuming incremental update %s (run %s)", key, run.id)
        frame, counts = _stored_rows(services, job, run)
    try:
        result = _update(services, job, run, key, frame, counts)
    except Exception as exc:
        _fail(services, job, run, exc)
        raise
    _save_result(services, run.id, result)
    services.tracking.log_batch(run.id, tags={STAGE_TAG: "done"})
    services.tracking.finish_run(run.id, RunStatus.FINISHED)
    return result


def _waiting(job: JobArgs, bounds: tuple[int, int], rows: int) -> dict[str, Any]:
    """Too few new labels: nothing claimed, nothing recorded; the next run takes them."""
    return {
        "model": job.model,
        "mode": "incremental",
        "outcome": "nothing new" if rows == 0 else "waiting",
        "new_rows": rows,
        "min_rows": job.retrain.min_rows,
        "high_water_mark_ms": bounds[0],
    }


def _dataset(job: JobArgs) -> str:
    return f"incremental-{job.model}"


def _store_rows(services: Any, job: JobArgs, run: Run, batch: TrainingData) -> pd.DataFrame:
    """The batch as a registered dataset version, the run's input (its hash in lineage)."""
    stored = services.datasets.register_frame(
        _dataset(job), batch.frame, source_uri=f"keel://predictions/{job.model}"
    )
    services.tracking.log_input(
        run.id,
        RunInput(
            name=_dataset(job),
            context="training",
            content_hash=stored.content_hash,
            schema=stored.schema_,
            row_count=stored.row_count,
            source_uri=stored.source_uri,
            dataset_version=stored.version,
        ),
    )
    counts = json.dumps(batch.counts())
    services.tracking.log_batch(run.id, tags={STAGE_TAG: "data", "keel.retrain.counts": counts})
    return batch.frame


def _stored_rows(services: Any, job: JobArgs, run: Run) -> tuple[pd.DataFrame, dict[str, int]]:
    for item in run.inputs:
        if item.name == _dataset(job) and item.dataset_version is not None:
            frame = services.datasets.load(_dataset(job), item.dataset_version)
            return frame, json.loads(run.tags.get("keel.retrain.counts", "{}"))
    raise RuntimeError(f"run {run.id} has no stored batch; it cannot resume")  # killed early


def _bounds(run: Run) -> tuple[int, int]:
    return int(run.tags[marks.FROM_TAG]), int(run.tags[marks.TO_TAG])


def _binary(frame: pd.DataFrame, job: JobArgs) -> np.ndarray:
    positive = str(job.retrain.positive)
    return np.asarray(frame[job.retrain.label].astype(str) == positive, dtype=np.int64)


def _update(
    services: Any, job: JobArgs, run: Run, key: str, frame: pd.DataFrame, counts: dict[str, int]
) -> dict[str, Any]:
    spec = job.retrain
    clock = Stages()
    with clock.stage("data"):  # split, champion, label guard
        ordered = frame.sort_values(TS_COLUMN, kind="stable").reset_index(drop=True)
        n_update = len(ordered) - max(1, int(round(len(ordered) * spec.incremental.holdout)))
        rows, holdout = ordered.iloc[:n_update], ordered.iloc[n_update:].reset_index(drop=True)
        parent, base = promotion.champion_model(services, job.model)
        guard = _guard(services, job, run, ordered, base)
    lineage: dict[str, Any] = {
        "parent_version": parent,
        "from_ms": _bounds(run)[0],
        "to_ms": _bounds(run)[1],
    }
    if not guard.passed:
        return _quarantine(services, job, run, key, guard, counts, lineage)
    with (
        clock.stage("training"),
        open_executor(
            spec.executor or services.settings.executor, ray_address=services.settings.ray_address
        ) as executor,
    ):
        params = {**spec.params, "label": spec.label}
        model = executor.run(
            apply_update,
            spec.update,
            spec.train,
            base,
            model_frame(rows),
            params,
            timeout_s=spec.fit_timeout_s,
        )
    with clock.stage("evaluation"):
        metrics = {
            **evaluate(model, rows, spec, "train"),
            **evaluate(model, holdout, spec, "holdout"),
            "rows.train": float(len(rows)),
            "rows.holdout": float(len(holdout)),
        }
        services.tracking.log_batch(
            run.id, metrics=[{"key": k, "value": v} for k, v in metrics.items()]
        )
    with clock.stage("registration"):
        check_cancelled()  # an update that ended as the job was cancelled registers nothing
        version = _register(services, job, run, key, model, rows)
        promotion._set_tags(services, version, _lineage_tags(lineage, len(rows), len(holdout)))
        services.tracking.log_batch(run.id, tags={marks.OUTCOME_TAG: "updated"})
    numbers = {
        **counts,
        **lineage,
        "mode": "incremental",
        "outcome": "updated",
        "rows_update": len(rows),
        "rows_holdout": len(holdout),
        "guard": guard.as_dict(),
        "metrics": metrics,
        "stages": clock.report(),
    }
    start = "updated" if parent is not None else "trained (no champion to update)"
    services.decisions.record(
        "retraining",
        job.model,
        f"incremental: v{version.version} {start} from v{parent} on {len(rows)} new labels "
        f"received {_iso(lineage['from_ms'])}–{_iso(lineage['to_ms'])} ({len(holdout)} held "
        f"out); {guard.summary()}; holdout AUC {_fmt(metrics.get('holdout.auc'))}; "
        f"{stage_line(clock.report())}"[:2000],
        numbers,
        actor=f"job:retrain.run:{key}",
        related=_related(job, run, version.version),
    )
    with clock.stage("gates"):
        outcome = _gate(services, job, run, version, parent, rows, holdout)
    services.tracking.log_batch(run.id, metrics=clock.metrics())
    return {
        "model": job.model,
        "mode": "incremental",
        "outcome": "updated",
        "version": version.version,
        "run_id": run.id,
        "rows": len(ordered),
        "rows_update": len(rows),
        "rows_holdout": len(holdout),
        **lineage,
        "guard": guard.as_dict(),
        "metrics": metrics,
        "stages": clock.report(),
        **outcome,
    }


def _guard(
    services: Any, job: JobArgs, run: Run, batch: pd.DataFrame, champion: Any
) -> GuardReport:
    """The label guard on the whole batch (a poisoned holdout would corrupt the gates)."""
    from keel.automation.gates.measure import positive_scores

    spec = job.retrain
    scores = None
    if champion is not None:
        features = model_frame(batch).drop(columns=[spec.label])
        scores = positive_scores(champion, features, spec.positive)
    recent = _recent_labels(services, job, run)
    report = check_labels(_binary(batch, job), recent, scores, spec.incremental.guard)
    metrics = [
        {"key": f"guard.{check.name}.{name}", "value": float(value)}
        for check in report.checks
        for name, value in check.numbers.items()
        if isinstance(value, int | float)
    ]
    services.tracking.log_batch(run.id, metrics=metrics)
    return report


def _recent_labels(services: Any, job: JobArgs, run: Run) -> np.ndarray:
    """0/1 labels received in the recent window before the batch, quarantined batches
    left out (an attacker's earlier batch must not become the baseline)."""
    spec = job.retrain
    start, _ = _bounds(run)
    window = spec.incremental.guard.recent_window_s * 1000
    experiment = spec.experiment or f"retrain-{job.model}"
    quarantined = marks.claims(services, experiment, job.model, window).quarantined
    now = services.jobs.clock()
    rows = services.feedback.labelled(job.model, None, now - spec.window_s * 1000, now)
    if rows.empty:
        return np.zeros(0, dtype=np.int64)
    received = np.asarray(
        (pd.to_datetime(rows["received_ts"], utc=True) - pd.Timestamp(0, tz="UTC"))
        // pd.Timedelta(milliseconds=1),
        dtype=np.int64,
    )
    keep = (received > start - window) & (received <= start)
    for low, high in quarantined:
        keep &= ~((received > low) & (received <= high))
    labels = label_values(rows.loc[keep].reset_index(drop=True)).dropna()
    return np.asarray(labels.astype(str) == str(spec.positive), dtype=np.int64)


def _quarantine(
    services: Any,
    job: JobArgs,
    run: Run,
    key: str,
    guard: GuardReport,
    counts: dict[str, int],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """Record the refused batch; the mark moves past it when the run finishes, so its
    rows are never trained on (and never retried into the same update)."""
    services.tracking.log_batch(
        run.id, tags={marks.OUTCOME_TAG: "quarantined", STAGE_TAG: "quarantined"}
    )
    services.decisions.record(
        "retraining",
        job.model,
        f"incremental: batch of {counts.get('rows', 0)} labels received "
        f"{_iso(lineage['from_ms'])}–{_iso(lineage['to_ms'])} quarantined, not used; "
        f"champion v{lineage['parent_version']} unchanged — {guard.summary()}"[:2000],
        {**counts, **lineage, "outcome": "quarantined", "guard": guard.as_dict()},
        actor=f"job:retrain.run:{key}",
        related=_related(job, run, None),
    )
    return {
        "model": job.model,
        "mode": "incremental",
        "outcome": "quarantined",
        "run_id": run.id,
        "rows": counts.get("rows", 0),
        **lineage,
        "guard": guard.as_dict(),
        "promoted": False,
    }


def _gate(
    services: Any,
    job: JobArgs,
    run: Run,
    version: Any,
    champion: int | None,
    rows: pd.DataFrame,
    holdout: pd.DataFrame,
) -> dict[str, Any]:
    """The usual gates on the held-out rows, margin "no regression" unless the spec's
    gates say otherwise; then the usual promotion, or straight to champion."""
    spec = job.retrain
    gates = {"margin": {"min_improvement": 0.0}, **(spec.gates or {})}
    gated = job.model_copy(update={"retrain": spec.model_copy(update={"gates": gates})})
    if spec.incremental.promote_to == "challenger":
        return promotion.validate_and_promote(
            services, gated, run, version, champion, rows, holdout
        )
    passed, summary, escalation = promotion._run_gates(
        services, gated, run, version, champion, rows, holdout
    )
    if not passed:
        return {"gates_passed": False, "promoted": False, "gate_summary": summary}
    if escalation:  # anomalous numbers wait for a human (R-CICD-10), as in any promotion
        promotion._set_tags(services, version, {promotion.APPROVAL: "pending"})
        services.decisions.record(
            "promotion",
            job.model,
            f"v{version.version} passed its gates and waits for approval (escalated: "
            f"{'; '.join(escalation)})"[:2000],
            {"status": "pending", "version": version.version, "escalation": escalation},
            actor="policy",
            related={"version": version.version, "run_id": run.id},
        )
        return {"gates_passed": True, "promoted": False, "approval": "pending"}
    why = "incremental update passed its gates"
    promotion._promote(services, job.model, version, "production", "policy", why)
    return {"gates_passed": True, "promoted": True, "alias": "champion"}


def _lineage_tags(lineage: dict[str, Any], rows: int, held: int) -> dict[str, str]:
    parent = lineage["parent_version"]
    return {
        "keel.incremental.parent": "" if parent is None else str(parent),
        "keel.incremental.from_ms": str(lineage["from_ms"]),
        "keel.incremental.to_ms": str(lineage["to_ms"]),
        "keel.incremental.rows": str(rows),
        "keel.incremental.holdout_rows": str(held),
    }


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
