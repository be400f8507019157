"""The ``gate`` decision of a kept validation report: one writer for every transport.

``keel validate`` (``Client.validate_model``) keeps the report on a validation run
(:mod:`keel.automation.gates.record`) through calls that work embedded and over HTTP,
then asks for the decision record: embedded, the SDK calls :func:`record_gate_decision`
directly; over HTTP, ``POST /v1/models/{name}/versions/{version}/validations`` calls it
on the server. The numbers come from the report stored on the run, never from the
caller, so a client cannot record a verdict its report does not hold.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from keel.automation.gates.record import EXPERIMENT, REPORT_JSON, decision_details
from keel.automation.gates.result import GateResult, ValidationReport
from keel.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from keel.decisions import Decision, DecisionLog
    from keel.registry.service import RegistryService
    from keel.tracking.service import TrackingService

__all__ = ["VALIDATE_ACTOR", "record_gate_decision", "report_from_dict"]

#: Who a gate decision is from when no user is known (no OS user name, auth off, no hint).
VALIDATE_ACTOR = "keel validate"

_REPORT_FIELDS = frozenset(f.name for f in fields(ValidationReport))
_GATE_FIELDS = frozenset(f.name for f in fields(GateResult))


def report_from_dict(data: Any) -> ValidationReport:
    """A :class:`ValidationReport` from its ``to_dict`` form; InvalidInput naming ``run_id``
    (whose stored report it is) when it is not one."""
    try:
        kept = {k: v for k, v in data.items() if k in _REPORT_FIELDS and k != "gates"}
        gates = [
            GateResult(**{k: v for k, v in g.items() if k in _GATE_FIELDS}) for g in data["gates"]
        ]
        return ValidationReport(gates=gates, **kept)
    except (AttributeError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"run_id: the run's {REPORT_JSON} is not a validation report ({exc})", field="run_id"
        ) from None


def record_gate_decision(
    tracking: TrackingService,
    registry: RegistryService,
    log: DecisionLog,
    name: str,
    version: int,
    run_id: str,
    actor: str,
) -> Decision:
    """Append the ``gate`` decision of the validation of ``name``/``version`` kept on run
    ``run_id`` (a run of the ``keel-validations`` experiment holding ``validation/report.json``).

    Raises NotFound for an unknown version, InvalidInput naming ``run_id`` when the run is
    missing, is not a validation of that version, or holds no readable report.
    """
    target = registry.get_version(name, version)
    try:
        run = tracking.get_run(run_id)
    except NotFound:
        raise InvalidInput(f"run_id: no run {run_id!r}", field="run_id") from None
    in_experiment = tracking.get_experiment(run.experiment_id).name == EXPERIMENT
    if not in_experiment or run.tags.get("keel.validation.model") != target.uri:
        raise InvalidInput(
            f"run_id: run {run_id!r} is not a validation of {target.uri} "
            f"(a run of the {EXPERIMENT!r} experiment tagged keel.validation.model)",
            field="run_id",
        )
    try:
        _, path = tracking.artifact_file(run_id, REPORT_JSON)
        stored = json.loads(path.read_bytes())
    except NotFound:
        raise InvalidInput(
            f"run_id: run {run_id!r} holds no {REPORT_JSON}", field="run_id"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"run_id: cannot read the run's {REPORT_JSON} ({exc})", field="run_id"
        ) from None
    report = report_from_dict(stored)
    return log.record(
        "gate",
        name,
        report.summary(),
        json.loads(json.dumps(decision_details(report, run_id), default=str)),
        actor=actor,
        related={"version": version, "run_id": run_id},
    )
