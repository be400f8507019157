"""After a retraining: gates against the champion on the fresh holdout, then promotion —
alias ``challenger`` and the rollout template, or a wait for a human (R-REG-02), and the
operator's approve / reject / override (R-CICD-10). Every step is a decision.

Stages map onto aliases: *development* is a registered version with no alias, *staging*
the ``challenger`` alias (and its rollout), *production* the ``champion`` alias, *archived*
the version status. Approval state is kept in version tags (``keel.approval.*``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from keel.automation.retrain.data import model_frame
from keel.automation.retrain.exploration import EXPLORE_COLUMN
from keel.automation.retrain.spec import rollout_policy
from keel.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from keel.automation.retrain.spec import JobArgs, RetrainSpec
    from keel.registry.models import ModelVersion
    from keel.tracking.models import Run

__all__ = [
    "STAGES",
    "approve",
    "champion_model",
    "champion_version",
    "reject",
    "validate_and_promote",
]

log = logging.getLogger("keel.retrain")

APPROVAL = "keel.approval.status"  # pending | approved | rejected
ROLLOUT_TAG = "keel.retrain.rollout"  # the rollout template (JSON) an approval starts
#: R-REG-02 stages → the alias a version takes.
STAGES: dict[str, str] = {"staging": "challenger", "production": "champion"}


def champion_version(services: Any, model: str) -> int | None:
    """The version the ``champion`` alias points at, or None."""
    try:
        return services.registry.get_model(model).aliases.get("champion")  # type: ignore[no-any-return]
    except NotFound:
        return None


def champion_model(services: Any, model: str) -> tuple[int | None, Any]:
    """The champion's version and its native model (the sklearn / LightGBM / … object the
    train function returned), or ``(None, None)`` when there is none (a warm start then
    trains from scratch)."""
    version = champion_version(services, model)
    if version is None:
        return None, None
    loaded = _load(services, services.registry.get_version(model, version))
    return version, getattr(loaded, "native", loaded)


def _load(services: Any, version: ModelVersion) -> Any:
    from keel.registry.packaging import load_model_dir

    settings = services.settings
    return load_model_dir(
        services.registry.model_dir(version),
        allow_pickle=settings.allow_pickle,
        trusted_classes=settings.trusted_model_class_names,
    )


def _gates_available() -> bool:
    try:
        import keel.automation.gates  # noqa: F401
    except ImportError:
        return False
    return True


def validate_and_promote(
    services: Any,
    job: JobArgs,
    run: Run,
    version: ModelVersion,
    champion: int | None,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
) -> dict[str, Any]:
    """Run the gates (when the gates package is installed), keep the report on the run,
    the version's tags and a ``gate`` decision; then promote, wait (approval required, or
    anomalous results escalated to a human, R-CICD-10), or stop."""
    spec = job.retrain
    passed, report_summary = True, "no validation gates installed"
    escalation: list[str] = []
    if _gates_available():
        passed, report_summary, escalation = _run_gates(
            services, job, run, version, champion, train, holdout
        )
    if not passed:
        return {"gates_passed": False, "promoted": False, "gate_summary": report_summary}
    if spec.rollout is not None:
        _set_tags(services, version, {ROLLOUT_TAG: json.dumps(spec.rollout)})
    if spec.require_approval or escalation:
        # anomalous results wait for a human even without require_approval (R-CICD-10)
        why = "escalated: " + "; ".join(escalation) if escalation else "approval required"
        _set_tags(services, version, {APPROVAL: "pending"})
        services.decisions.record(
            "promotion",
            job.model,
            f"v{version.version} passed its gates and waits for approval ({why}) "
            f"(keel models approve {job.model} {version.version})"[:2000],
            {"status": "pending", "version": version.version, "escalation": escalation},
            actor="policy",
            related={"version": version.version, "run_id": run.id},
        )
        return {
            "gates_passed": True,
            "promoted": False,
            "approval": "pending",
            "escalation": escalation,
        }
    deployment = _promote(services, job.model, version, "staging", "policy", "gates passed")
    return {"gates_passed": True, "promoted": True, "deployment": deployment}


def _run_gates(
    services: Any,
    job: JobArgs,
    run: Run,
    version: ModelVersion,
    champion: int | None,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
) -> tuple[bool, str, list[str]]:
    """Run and keep the gates; (passed, one-line summary, escalation reasons)."""
    from keel.automation.gates import run_gates, to_markdown
    from keel.automation.gates.escalation import escalation_reasons
    from keel.automation.gates.record import (
        REPORT_JSON,
        REPORT_MD,
        decision_details,
        run_metrics,
        version_tags,
    )
    from keel.decisions.prevention import model_resolutions, with_prevention

    spec = job.retrain
    champion_item = None if champion is None else services.registry.get_version(job.model, champion)
    report = run_gates(
        _load(services, version),
        model_frame(_gate_rows(holdout, spec)),
        spec.label,
        # the spec's gates plus the gate rules of the model's resolved incidents (R-CICD-13)
        with_prevention(spec.gates, model_resolutions(services.decisions, job.model)),
        champion=None if champion_item is None else _load(services, champion_item),
        training=model_frame(train),
        challenger_name=version.uri,
        champion_name=None if champion_item is None else champion_item.uri,
        size_bytes=sum(f.size_bytes for f in version.files),
        signature=version.signature,
        positive=spec.positive,
    )
    services.tracking.log_batch(
        run.id, metrics=[{"key": k, "value": v} for k, v in run_metrics(report).items()]
    )
    with tempfile.TemporaryDirectory(prefix="keel-gates-") as tmp:
        folder = Path(tmp) / "validation"
        folder.mkdir()
        (folder / Path(REPORT_JSON).name).write_text(report.to_json(), encoding="utf-8")
        (folder / Path(REPORT_MD).name).write_text(to_markdown(report), encoding="utf-8")
        services.tracking.log_artifact_dir(run.id, folder, "validation")
    _set_tags(services, version, version_tags(report, run.id))
    escalation = escalation_reasons(report) if report.passed else []
    verdict = "passed" if report.passed else "failed: not promoted"
    if escalation:
        verdict = "passed but escalated to a human"
    services.decisions.record(
        "gate",
        job.model,
        f"v{version.version} {verdict} — {report.summary()}"[:2000],
        json.loads(json.dumps(decision_details(report, run.id), default=str)),
        actor="policy",
        related={"version": version.version, "run_id": run.id, "champion": champion},
    )
    return report.passed, report.summary(), escalation


def _set_tags(services: Any, version: ModelVersion, tags: dict[str, str]) -> ModelVersion:
    current = services.registry.get_version(version.name, version.version)
    return services.registry.update_version(  # type: ignore[no-any-return]
        version.name, version.version, tags={**current.tags, **tags}
    )


def _promote(
    services: Any, model: str, version: ModelVersion, stage: str, actor: str, why: str
) -> str | None:
    """Move the stage's alias to ``version``; for staging, start the rollout template.
    The deployment's name, or None when no rollout was started."""
    alias = STAGES[stage]
    services.registry.set_alias(model, alias, version.version, actor=actor, reason=why)
    deployment = None
    template = services.registry.get_version(model, version.version).tags.get(ROLLOUT_TAG)
    if template and champion_version(services, model) is None:
        # nothing serves yet to roll out against: the alias alone is the release
        why += "; no champion, so no rollout"
        template = None
    if stage == "staging" and template:
        policy = rollout_policy(json.loads(template), model, f"{model}-v{version.version}")
        try:
            deployment = services.deployments.create(policy, actor=actor).name
        except (Conflict, InvalidInput) as exc:
            # e.g. a rollout still running: the alias stands, the operator starts it later
            why += f"; rollout not started: {exc.message}"
    services.decisions.record(
        "promotion",
        model,
        f"v{version.version} → {alias} ({stage}) by {actor}: {why}"
        + (f"; rollout {deployment!r} started" if deployment else ""),
        {"stage": stage, "alias": alias, "version": version.version, "deployment": deployment},
        actor=actor,
        deployment=deployment,
        related={"version": version.version},
    )
    return deployment


def approve(
    services: Any,
    model: str,
    version: int,
    *,
    actor: str,
    reason: str,
    stage: Literal["staging", "production"] = "staging",
) -> dict[str, Any]:
    """Release a version waiting for approval into ``stage`` (recorded sign-off, R-REG-02).

    Approving a version whose gates failed, or that was rejected, overrides the automated
    decision (R-CICD-10) and is recorded as an ``override``. InvalidInput for an empty
    reason or an unknown stage; NotFound for an unknown version.
    """
    item = _checked(services, model, version, reason, stage)
    status = item.tags.get(APPROVAL)
    gates = item.tags.get("keel.validation.status")
    if gates == "failed" or status == "rejected":
        services.decisions.record(
            "override",
            model,
            f"{actor} approved v{version} into {stage} over the automated decision "
            f"(approval {status or 'none'}, gates {gates or 'not run'}): {reason}",
            {"action": "approve", "stage": stage, "approval_was": status, "gates": gates},
            actor=actor,
            related={"version": version},
        )
    _set_tags(services, item, {APPROVAL: "approved", "keel.approval.by": actor})
    deployment = _promote(services, model, item, stage, actor, reason)
    return {"model": model, "version": version, "status": "approved", "deployment": deployment}


def reject(services: Any, model: str, version: int, *, actor: str, reason: str) -> dict[str, Any]:
    """Refuse a version: it stays registered, never takes an alias by automation; a
    challenger alias on it is removed. Rejecting a version the policy promoted is an
    ``override`` decision; rejecting a pending one a ``promotion`` decision."""
    item = _checked(services, model, version, reason, "staging")
    registered = services.registry.get_model(model)
    if registered.aliases.get("champion") == version:
        raise Conflict(
            f"v{version} is the champion; roll back or promote another version first",
            field="version",
        )
    was = item.tags.get(APPROVAL)
    _set_tags(services, item, {APPROVAL: "rejected", "keel.approval.by": actor})
    if registered.aliases.get("challenger") == version:
        services.registry.delete_alias(model, "challenger", actor=actor, reason=reason)
    kind = "promotion" if was == "pending" else "override"
    services.decisions.record(
        kind,
        model,
        f"{actor} rejected v{version}: {reason}",
        {"action": "reject", "approval_was": was},
        actor=actor,
        related={"version": version},
    )
    return {"model": model, "version": version, "status": "rejected"}


def _checked(services: Any, model: str, version: int, reason: str, stage: str) -> ModelVersion:
    if not reason or not reason.strip():
        raise InvalidInput("reason: say why (it goes in the decision log)", field="reason")
    if stage not in STAGES:
        raise InvalidInput(
            f"stage: expected one of {', '.join(STAGES)}, got {stage!r}", field="stage"
        )
    return services.registry.get_version(model, version)  # type: ignore[no-any-return]


def _gate_rows(holdout: pd.DataFrame, spec: RetrainSpec) -> pd.DataFrame:
    """The holdout the gates judge: its explored rows only when the exploration policy says
    ``evaluate_on: explored`` (R-TRN-24: the exploited rows' labels are the model's choice)."""
    exploration = spec.exploration
    if exploration is None or exploration.evaluate_on != "explored":
        return holdout
    if EXPLORE_COLUMN not in holdout.columns:
        return holdout.iloc[0:0]
    return holdout.loc[holdout[EXPLORE_COLUMN].astype(bool)].reset_index(drop=True)
