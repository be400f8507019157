"""The ``retrain.run`` job: assemble → split → (search) → fit → log → register → gates →
promote, resumable after a kill -9 and idempotent by the job's arguments (R-TRN-25).

Progress lives on the tracked run (no schema change): the run carries the tag
``keel.retrain.key`` (a hash of the job's arguments) and ``keel.retrain.stage``; the
assembled rows are a registered dataset version logged as the run's input; each search
trial is a finished child run. A re-delivered job finds its running run by key and carries
on from its stage; a finished one returns its recorded result; a failed one starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import traceback
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from keel.automation.kinds import register_kind
from keel.automation.retrain import promotion, validation
from keel.automation.retrain.data import TrainingData, assemble, model_frame, time_split
from keel.automation.retrain.exploration import cohort_metrics, selective_labels_warning
from keel.automation.retrain.spec import JobArgs, RetrainSpec, parse_job_args
from keel.automation.retrain.stages import Stages, stage_line
from keel.automation.retrain.training import COLD, evaluate, fit, search
from keel.automation.triggers.code import CODE_TAGS, retrain_code_tags
from keel.errors import InvalidInput
from keel.executors import Executor, TaskCancelled, check_cancelled, open_executor
from keel.tracking.models import Run, RunInput, RunStatus

__all__ = ["KEY_TAG", "STAGE_TAG", "job_key", "register_retrain_kind", "run_retrain"]

log = logging.getLogger("keel.retrain")

KEY_TAG = "keel.retrain.key"
STAGE_TAG = "keel.retrain.stage"
VERSION_TAG = "keel.retrain.version"
PARENT_TAG = "keel.retrain.parent"
RESULT_FILE = "retrain/result.json"


def job_key(args: dict[str, Any]) -> str:
    """The idempotency key of a retraining: a hash of its canonical arguments."""
    return hashlib.sha256(orjson.dumps(args, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def register_retrain_kind() -> None:
    """(Re)register ``retrain.run`` — done at import; for code that replaced it (tests)."""
    from keel.automation.retrain.applycheck import check_job

    register_kind("retrain.run", run_retrain, check=check_job)


def run_retrain(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Retrain a model with its train function, register it, validate it, promote it."""
    job = parse_job_args(args)
    if job.retrain.mode == "incremental":  # R-TRN-09: update the champion with new labels
        from keel.automation.retrain.incremental import run_incremental

        return run_incremental(services, args)
    key = job_key(args)
    experiment = job.retrain.experiment or f"retrain-{job.model}"
    run = _find_run(services, experiment, key)
    if run is not None and run.tags.get(STAGE_TAG) == "done":
        _, path = services.tracking.artifact_file(run.id, RESULT_FILE)
        result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        log.info("retraining %s already done (run %s): nothing to redo", key, run.id)
        return result
    if run is None:
        run = services.tracking.create_run(
            experiment,
            name=f"retrain {job.model}",
            tags={KEY_TAG: key, STAGE_TAG: "started", "keel.retrain.model": job.model}
            | retrain_code_tags(job.retrain.train, job.source),  # R-CICD-02
            params=_run_params(job),
        )
    else:
        log.info(
            "resuming retraining %s at stage %s (run %s)", key, run.tags.get(STAGE_TAG), run.id
        )
    try:
        result = _pipeline(services, job, run, key)
    except validation.DataRefused as refused:  # R-CICD-07: nothing trains on these rows
        return validation.refuse(services, job, run, refused.report, _related(job, run, None))
    except Exception as exc:
        _fail(services, job, run, exc)
        raise
    _save_result(services, run.id, result)
    services.tracking.log_batch(run.id, tags={STAGE_TAG: "done"})
    services.tracking.finish_run(run.id, RunStatus.FINISHED)
    return result


def _find_run(services: Any, experiment: str, key: str) -> Run | None:
    """This key's run that is running (resume) or finished (done); failed runs start over."""
    from keel.errors import NotFound

    try:
        page = services.tracking.search_runs(
            [experiment], f"tags.`{KEY_TAG}` = '{key}'", ["start_time DESC"], 10
        )
    except NotFound:  # the experiment does not exist yet
        return None
    for run in page.items:
        if run.status in (RunStatus.RUNNING, RunStatus.FINISHED):
            return run  # type: ignore[no-any-return]
    return None


def _run_params(job: JobArgs) -> dict[str, Any]:
    spec = job.retrain
    return {
        "train": spec.train,
        "label": spec.label,
        "window_s": spec.window_s,
        "split": spec.split.describe(),
        "decay_per_day": "" if spec.decay_per_day is None else spec.decay_per_day,
        "warm_start": spec.warm_start,
        "data_mode": job.data.mode,
        "since_ms": "" if job.data.since_ms is None else job.data.since_ms,
        "trigger": job.trigger or "",
        "decision_id": "" if job.decision_id is None else job.decision_id,
        **{f"param.{k}": _plain(v) for k, v in spec.params.items()},
    }


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else json.dumps(value)


def _pipeline(services: Any, job: JobArgs, run: Run, key: str) -> dict[str, Any]:
    spec = job.retrain
    clock = Stages()
    with clock.stage("data"):  # assembly, validation (min_rows), time split
        frame, counts = _training_rows(services, job, run)
        train, valid, holdout = time_split(frame, spec.split)
        checks = validation.stored_summary(services, run.id)
    best: dict[str, Any] = {}
    settings = services.settings
    warm_from, champion_model = None, COLD  # R-TRN-26: fine-tune from the champion
    if spec.warm_start:
        warm_from, champion_model = promotion.champion_model(services, job.model)
    with (
        clock.stage("training"),
        open_executor(
            spec.executor or settings.executor, ray_address=settings.ray_address
        ) as executor,
    ):
        if spec.search is not None:
            best = _search(services, spec, run, train, valid, executor)
            services.tracking.log_batch(
                run.id, params={f"best.{k}": _plain(v) for k, v in best.items()}
            )
        model = fit(spec, train, best, executor, champion_model)
    with clock.stage("evaluation"):
        metrics = {
            **evaluate(model, train, spec, "train"),
            **evaluate(model, valid, spec, "validation"),
            **evaluate(model, holdout, spec, "holdout"),
            # R-TRN-24 cohort evaluation: explored rows (unbiased) apart from exploited ones
            **cohort_metrics(lambda part, name: evaluate(model, part, spec, name), holdout),
            "rows.train": float(len(train)),
            "rows.validation": float(len(valid)),
            "rows.holdout": float(len(holdout)),
        }
        services.tracking.log_batch(
            run.id, metrics=[{"key": k, "value": v} for k, v in metrics.items()]
        )
    with clock.stage("registration"):
        check_cancelled()  # a fit that ended as the job was cancelled registers nothing
        version = _register(services, job, run, key, model, train)
    champion = promotion.champion_version(services, job.model)
    warning = selective_labels_warning(spec.selective_labels, spec.exploration, frame)
    warnings = [] if warning is None else [warning]
    # the retraining decision precedes the gate decision it leads to, so it carries the
    # stages so far; the run's metrics and the job's result add the gates' time
    services.decisions.record(
        "retraining",
        job.model,
        f"retrained {job.model} v{version.version} on {counts['rows']} rows "
        f"({job.data.mode}); holdout AUC {_fmt(metrics.get('holdout.auc'))}; "
        f"{stage_line(clock.report())}" + "".join(f"; WARNING {w}" for w in warnings),
        {
            **counts,
            "metrics": metrics,
            "best_params": best,
            "split": spec.split.model_dump(),
            "stages": clock.report(),
            "warm_start": {"from_version": warm_from} if spec.warm_start else None,
            "warnings": warnings,
            "data_validation": checks,
        },
        actor=f"job:retrain.run:{key}",
        related=_related(job, run, version.version),
    )
    with clock.stage("gates"):  # validation gates and promotion
        outcome = promotion.validate_and_promote(
            services, job, run, version, champion, train, holdout
        )
    services.tracking.log_batch(run.id, metrics=clock.metrics())
    return {
        "model": job.model,
        "version": version.version,
        "run_id": run.id,
        "rows": counts["rows"],
        "metrics": metrics,
        "stages": clock.report(),
        "data_validation": checks,
        "warnings": warnings,
        **outcome,
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _related(job: JobArgs, run: Run, version: int | None) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "version": version,
        "trigger": job.trigger,
        "trigger_decision_id": job.decision_id,
    }


def _training_rows(services: Any, job: JobArgs, run: Run) -> tuple[pd.DataFrame, dict[str, int]]:
    """The run's logged input when resuming; else assembled now, stored and logged."""
    name = f"retrain-{job.model}"
    for item in run.inputs:
        if item.name == name and item.dataset_version is not None:
            log.info("reusing the assembled rows (dataset %s v%s)", name, item.dataset_version)
            frame = services.datasets.load(name, item.dataset_version)
            counts = json.loads(run.tags.get("keel.retrain.counts", "{}"))
            return frame, counts
    # the window ends at the automation services' clock (the one the trigger that fired
    # this job and the job service read), not the wall clock: a replay or a test on its own
    # clock otherwise assembles rows from another time than the one it evaluated
    now = services.jobs.clock()
    data: TrainingData = assemble(services, job.model, job.retrain, job.data, now)
    frame, counts = data.frame, data.counts()
    if job.retrain.data_validation is not None and len(frame) >= job.retrain.min_rows:
        # R-CICD-07 / R-TRN-21: stats, schema, anomalies, skew, window; corrupted periods out
        frame, report = validation.validate(services, job, data, now)
        validation.store(services, run.id, report)
        counts = {**counts, "rows": len(frame), "quarantined_rows": report["quarantined_rows"]}
    if len(frame) < job.retrain.min_rows:
        raise InvalidInput(
            f"retrain.min_rows: {len(frame)} labelled rows in the window "
            f"(need {job.retrain.min_rows}); counts {counts}",
            field="retrain.min_rows",
        )
    stored = services.datasets.register_frame(
        name, frame, source_uri=f"keel://predictions/{job.model}"
    )
    services.tracking.log_input(
        run.id,
        RunInput(
            name=name,
            context="training",
            content_hash=stored.content_hash,
            schema=stored.schema_,
            row_count=stored.row_count,
            source_uri=stored.source_uri,
            dataset_version=stored.version,
        ),
    )
    services.tracking.log_batch(
        run.id, tags={STAGE_TAG: "data", "keel.retrain.counts": json.dumps(counts)}
    )
    return frame, counts


def _search(
    services: Any,
    spec: RetrainSpec,
    run: Run,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    executor: Executor,
) -> dict[str, Any]:
    """Optuna trials as child runs; trials finished before a restart are not redone."""
    experiment = run.experiment_id
    page = services.tracking.search_runs(
        [experiment], f"tags.`{PARENT_TAG}` = '{run.id}'", ["start_time ASC"], 1000
    )
    done = [
        json.loads(child.tags["keel.retrain.trial"])
        for child in page.items
        if child.status == RunStatus.FINISHED and "keel.retrain.trial" in child.tags
    ]
    done.sort(key=lambda t: t["number"])

    def record(trial: dict[str, Any]) -> None:
        child = services.tracking.create_run(
            experiment,
            name=f"trial {trial['number']}",
            parent_run_id=run.id,
            tags={PARENT_TAG: run.id, "keel.retrain.trial": json.dumps(trial, default=str)},
            params={k: _plain(v) for k, v in trial["params"].items()},
        )
        metrics = [{"key": k, "value": v} for k, v in trial["metrics"].items()]
        services.tracking.log_batch(child.id, metrics=metrics)
        services.tracking.finish_run(child.id, RunStatus.FINISHED)

    return search(spec, train, validation, done, record, executor)


def _register(
    services: Any, job: JobArgs, run: Run, key: str, model: Any, train: pd.DataFrame
) -> Any:
    """Log the model under the run and register it once per key (a resumed job that had
    registered already finds its version by run id)."""
    from keel.registry.packaging import save_model_dir

    for existing in _versions(services, job.model):
        if existing.run_id == run.id:
            return existing
    example = model_frame(train).drop(columns=[job.retrain.label]).head(5)
    with tempfile.TemporaryDirectory(prefix="keel-retrain-") as tmp:
        save_model_dir(model, Path(tmp) / "model", input_example=example)
        services.tracking.log_artifact_dir(run.id, Path(tmp) / "model", "model")
    tags = {
        KEY_TAG: key,
        "keel.retrain.run_id": run.id,
        "keel.retrain.trigger": job.trigger or "manual",
        "keel.retrain.data_mode": job.data.mode,
        **{k: v for k, v in run.tags.items() if k in CODE_TAGS},
    }
    if job.decision_id is not None:
        tags["keel.retrain.decision_id"] = str(job.decision_id)
    version = services.registry.create_version(
        job.model,
        run.id,
        "model",
        description=f"retrained by trigger {job.trigger or 'manual'}",
        tags=tags,
        created_by="retrain.run",
    )
    services.tracking.log_batch(
        run.id, tags={STAGE_TAG: "registered", VERSION_TAG: str(version.version)}
    )
    return version


def _versions(services: Any, model: str) -> list[Any]:
    from keel.errors import NotFound

    try:
        return list(services.registry.list_versions(model))
    except NotFound:
        return []


def _fail(services: Any, job: JobArgs, run: Run, exc: BaseException) -> None:
    """Keep the traceback on the run and in the decision log; end the run FAILED (KILLED
    when the job was cancelled). The champion is not touched (nothing moved an alias)."""
    text = "".join(traceback.format_exception(exc))
    error = f"{type(exc).__name__}: {exc}"
    cancelled = isinstance(exc, TaskCancelled)
    outcome = "cancelled" if cancelled else "failed"
    try:
        services.tracking.log_artifact_stream(run.id, "retrain/traceback.txt", _stream(text))
        services.tracking.log_batch(
            run.id, tags={STAGE_TAG: outcome, "keel.retrain.error": error[:4000]}
        )
        services.tracking.finish_run(run.id, RunStatus.KILLED if cancelled else RunStatus.FAILED)
    finally:
        services.decisions.record(
            "retraining",
            job.model,
            f"retraining {job.model} {outcome}: {error}"[:2000],
            {"error": error, "traceback": text, "run_id": run.id},
            actor="job:retrain.run",
            related=_related(job, run, None),
        )


def _stream(text: str) -> Any:
    import io

    return io.BytesIO(text.encode("utf-8"))


def _save_result(services: Any, run_id: str, result: dict[str, Any]) -> None:
    body = json.dumps(result, default=str, indent=2)
    services.tracking.log_artifact_stream(run_id, RESULT_FILE, _stream(body))


register_retrain_kind()
