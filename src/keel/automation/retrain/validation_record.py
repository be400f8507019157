"""What a data validation leaves behind: the report as a run artifact, its summary in the
job result and the ``retraining`` decision, and the record of a refusal."""

from __future__ import annotations

import io
import json
from typing import Any

from keel.automation.retrain.spec import JobArgs
from keel.errors import NotFound

__all__ = ["ARTIFACT", "describe", "refuse", "store", "stored", "stored_summary", "summary"]

#: The run artifact holding the whole report (statistics, schema, skew, window, verdict).
ARTIFACT = "retrain/data_validation.json"


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a job result and a decision carry (the artifact keeps the schema too)."""
    keys = ("passed", "reference", "rows", "kept_rows", "quarantined_rows", "failures",
            "warnings", "stats", "skew", "window")  # fmt: skip
    out = {k: report[k] for k in keys if k in report}
    quarantine = report.get("quarantine") or {}
    out["quarantined_periods"] = [
        {k: p[k] for k in ("start", "rows", "columns")} for p in quarantine.get("periods", [])
    ]
    return out


def store(services: Any, run_id: str, report: dict[str, Any]) -> None:
    """The whole report as the run's ``retrain/data_validation.json``."""
    body = json.dumps(report, default=str, indent=2).encode("utf-8")
    services.tracking.log_artifact_stream(run_id, ARTIFACT, io.BytesIO(body))


def stored(services: Any, run_id: str) -> dict[str, Any] | None:
    """The report a run stored (None when validation was off)."""
    try:
        _, path = services.tracking.artifact_file(run_id, ARTIFACT)
    except NotFound:
        return None
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def stored_summary(services: Any, run_id: str) -> dict[str, Any] | None:
    """The summary of the report a run stored (None when validation was off)."""
    report = stored(services, run_id)
    return None if report is None else summary(report)


def refuse(
    services: Any, job: JobArgs, run: Any, report: dict[str, Any], related: dict[str, Any]
) -> dict[str, Any]:
    """Record a refusal: the report on the run, a ``retraining`` decision naming the
    columns with the numbers, the run ended FAILED; the job's result."""
    from keel.tracking.models import RunStatus

    store(services, run.id, report)
    columns = sorted({f["column"] for f in report["failures"] if f["column"]})
    reason = "; ".join(f["message"] for f in report["failures"])
    services.tracking.log_batch(
        run.id, tags={"keel.retrain.stage": "refused", "keel.retrain.error": reason[:4000]}
    )
    services.tracking.finish_run(run.id, RunStatus.FAILED)
    brief = summary(report)
    services.decisions.record(
        "retraining",
        job.model,
        f"retraining {job.model} refused before training: data validation failed: {reason}"[:2000],
        {"refused": True, "columns": columns, "data_validation": brief, "run_id": run.id},
        actor="job:retrain.run",
        related=related,
    )
    return {
        "model": job.model,
        "run_id": run.id,
        "refused": True,
        "reason": reason,
        "columns": columns,
        "data_validation": brief,
    }


def describe(checked: dict[str, Any]) -> list[str]:
    """Lines for ``keel jobs show``: the verdict, one line per column, the findings."""
    verdict = "passed" if checked.get("passed") else "refused"
    ref = checked.get("reference")
    source = f"reference {ref['dataset']} v{ref['dataset_version']}" if ref else "no reference"
    lines = [
        f"data validation: {verdict} ({checked.get('kept_rows')} of {checked.get('rows')} rows "
        f"kept, {checked.get('quarantined_rows', 0)} quarantined; {source})"
    ]
    skew = checked.get("skew") or {}
    for name, stats in (checked.get("stats") or {}).items():
        parts = [f"count {stats['count']}", f"missing {stats['missing_share']:.1%}"]
        parts += [f"{k} {stats[k]:.4g}" for k in ("min", "max", "mean", "std") if k in stats]
        parts.append(f"distinct {stats['distinct']}")
        if stats.get("top"):
            parts.append("top " + ", ".join(f"{t['value']}={t['count']}" for t in stats["top"]))
        parts += [
            f"{k.upper()} {v:.3f}"
            for k, v in skew.get(name, {}).items()
            if k != "ks_pvalue" and v is not None
        ]
        lines.append(f"  {name}: " + ", ".join(parts))
    for kind in ("failures", "warnings"):
        lines += [f"  {kind[:-1]}: {f['message']}" for f in checked.get(kind) or []]
    return lines
