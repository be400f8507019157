"""Resolving an incident: a permanent check so it cannot happen the same way again (R-CICD-13).

An open incident (:mod:`keel.decisions.incidents`) is resolved by appending a
``resolution`` record that names it (``resolves``) and carries its prevention:

* a **gate rule**: a part of a gate policy (``{"floor": {"min_auc": 0.82}}``,
  ``{"slices": {"columns": ["Contract"]}}``) that every later gate run of the model
  applies on top of the policy it was given (:func:`with_prevention`): the retraining
  pipeline's gates and ``keel validate`` both read it from the log;
* a **monitor rule** (:class:`keel.monitoring.rules.MonitorRule`) added to one of the
  model's monitors, which every later run of that monitor evaluates;
* or, from an admin or an owner of the model only, a ``no_check_reason``.

The log is only appended to: the incident itself is never edited, and its ``open`` flag
is derived from the resolution that names it. The operations package's incidents
(kinds ``alert``/``incident``) resolve through the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keel._models import invalid_input
from keel.decisions.incidents import RESOLUTION_KIND
from keel.decisions.models import Decision
from keel.errors import Conflict, InvalidInput
from keel.monitoring.rules import MonitorRule, parse_rule, resolution_source

if TYPE_CHECKING:
    from keel.automation.gates.policy import GatePolicy
    from keel.decisions.service import DecisionLog
    from keel.monitoring.models import MonitorSpec
    from keel.monitoring.service import MonitorService

__all__ = [
    "PreventionCheck",
    "ResolveRequest",
    "gate_overlay",
    "merge_policy",
    "model_resolutions",
    "resolve_incident",
    "with_prevention",
]


class PreventionCheck(BaseModel):
    """The permanent check: ``gate`` (a part of a gate policy) or ``monitor`` + ``rule``."""

    model_config = ConfigDict(extra="forbid")

    gate: dict[str, Any] | None = Field(default=None, min_length=1)
    monitor: str | None = Field(default=None, min_length=1, max_length=128)
    rule: MonitorRule | None = None

    @field_validator("rule", mode="before")
    @classmethod
    def _rule_text(cls, value: Any) -> Any:
        # a rule may be written as text: "null_share(TotalCharges) > 0.01"
        if isinstance(value, str):
            try:
                return parse_rule(value).model_dump()
            except InvalidInput as exc:
                raise ValueError(exc.message.removeprefix("rule: ")) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> PreventionCheck:
        if self.gate is not None and (self.monitor is not None or self.rule is not None):
            raise ValueError("give either gate or monitor with rule, not both")
        if self.gate is None and (self.monitor is None or self.rule is None):
            raise ValueError("give gate (a part of a gate policy) or monitor with rule")
        return self


class ResolveRequest(BaseModel):
    """The body of ``POST /v1/decisions/{id}/resolve``, also checked by both SDK transports."""

    model_config = ConfigDict(extra="forbid")

    check: PreventionCheck | None = None
    no_check_reason: str | None = Field(default=None, min_length=1, max_length=2000)
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _prevention(self) -> ResolveRequest:
        if self.check is None and self.no_check_reason is None:
            raise ValueError(
                "a resolution needs a prevention: a gate or monitor rule, "
                "or no_check_reason (admins and owners only)"
            )
        if self.check is not None and self.no_check_reason is not None:
            raise ValueError("give check or no_check_reason, not both")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ResolveRequest:
        """Validate a mapping; InvalidInput naming the field (``check``, ``check.rule``...)."""
        if not isinstance(data, Mapping):
            raise InvalidInput("expected a mapping with check or no_check_reason", field="check")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            error = invalid_input(exc)
            if error.field == "body":  # the body's own rule: no prevention given
                reason = error.message.removeprefix("body: ")
                error = InvalidInput(f"check: {reason}", field="check")
            raise error from None


def merge_policy(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base``: sections merge key by key, lists are unioned (order kept),
    other values are the overlay's (a prevention wins over the policy it tightens)."""
    merged = dict(base)
    for key, value in overlay.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge_policy(current, value)
        elif isinstance(value, list) and isinstance(current, list):
            merged[key] = current + [v for v in value if v not in current]
        else:
            merged[key] = value
    return merged


def gate_overlay(resolutions: Iterable[Decision]) -> dict[str, Any]:
    """The gate rules of ``resolutions`` merged oldest first: the model's prevention policy."""
    overlay: dict[str, Any] = {}
    for record in sorted(resolutions, key=lambda d: (d.at_ms, d.id or 0)):
        gate = (record.details.get("check") or {}).get("gate")
        if record.kind == RESOLUTION_KIND and isinstance(gate, Mapping):
            overlay = merge_policy(overlay, gate)
    return overlay


def with_prevention(policy: Any, resolutions: Iterable[Decision]) -> GatePolicy:
    """``policy`` (a GatePolicy, a mapping, None: the defaults) with the model's gate rules
    applied; what every gate run of the model uses."""
    from keel.automation.gates.policy import parse_policy

    if isinstance(policy, BaseModel):
        base = policy.model_dump(exclude_unset=True)
    else:
        base = parse_policy(policy).model_dump(exclude_unset=True) if policy else {}
    return parse_policy(merge_policy(base, gate_overlay(resolutions)))


def model_resolutions(log: DecisionLog, model: str) -> list[Decision]:
    """Every resolution record of ``model`` (what :func:`gate_overlay` reads)."""
    return log.query(model=model, kind=RESOLUTION_KIND, limit=10_000)


def _check_gate(gate: Mapping[str, Any]) -> dict[str, Any]:
    from keel.automation.gates.policy import parse_policy

    try:
        parse_policy(gate)
    except InvalidInput as exc:
        path = f"check.gate.{exc.field}" if exc.field and exc.field != "policy" else "check.gate"
        raise InvalidInput(f"{path}: {exc.message.split(': ', 2)[-1]}", field=path) from None
    off = _disabled(gate, "check.gate")
    if off is not None:  # a prevention adds a check; switching one off would hide the next one
        raise InvalidInput(f"{off}: a prevention cannot disable a gate", field=off)
    return dict(gate)


def _disabled(section: Mapping[str, Any], path: str) -> str | None:
    """The path of the first ``enabled: false`` in ``section``, if any."""
    for key, value in section.items():
        if key == "enabled" and value is False:
            return f"{path}.enabled"
        if isinstance(value, Mapping):
            found = _disabled(value, f"{path}.{key}")
            if found is not None:
                return found
    return None


def _with_rule(spec: MonitorSpec, model: str, rule: MonitorRule) -> MonitorSpec:
    """``spec`` with ``rule`` appended unless it has the same check; 422 naming
    ``check.monitor`` when the monitor watches another model."""
    if spec.model != model:
        raise InvalidInput(
            f"check.monitor: monitor {spec.name!r} watches model {spec.model!r}, not {model!r}",
            field="check.monitor",
        )
    if any(rule.same_check(r) for r in spec.rules):
        return spec
    try:  # validated: the monitor holds at most 100 rules
        return type(spec).model_validate({**spec.model_dump(), "rules": [*spec.rules, rule]})
    except ValidationError as exc:
        raise invalid_input(exc) from None


def _add_rule(
    monitors: MonitorService, model: str, name: str, rule: MonitorRule, *, save: bool
) -> None:
    """Check (``save`` False) or store (``save`` True) ``rule`` on monitor ``name``; 422
    naming ``check.monitor`` or ``check.rule``, the monitor unchanged then.

    Storing re-reads the spec under the monitor's row lock (:meth:`MonitorService.update`),
    so rules added by concurrent resolutions are all kept.
    """
    from keel.errors import NotFound
    from keel.monitoring.models import MonitorSpec

    try:
        if save:
            monitors.update(name, lambda spec: _with_rule(spec, model, rule))
        else:
            current = monitors.get(name)
            fields = set(MonitorSpec.model_fields)
            spec = MonitorSpec(**current.model_dump(include=fields))
            monitors.check(_with_rule(spec, model, rule))
    except NotFound:
        raise InvalidInput(f"check.monitor: no monitor {name!r}", field="check.monitor") from None
    except InvalidInput as exc:
        if exc.field != "rules":  # the monitor's own field, or already check.monitor
            raise
        raise InvalidInput(
            exc.message.replace("rules:", "check.rule:", 1), field="check.rule"
        ) from None


def resolve_incident(
    log: DecisionLog,
    monitors: MonitorService,
    decision_id: int,
    request: ResolveRequest,
    actor: str,
) -> Decision:
    """Close incident ``decision_id`` with ``request``'s prevention; the ``resolution`` record.

    NotFound for an unknown id; Conflict (409) when it is already resolved (also when two
    resolve it at once: the database keeps one); InvalidInput naming ``id`` when the record
    is not an incident, or naming the check's field. The check is validated before anything
    is written; the monitor gets its rule once the resolution is appended.
    """
    incident = log.get(decision_id)
    if not incident.incident:
        raise InvalidInput(
            f"id: decision {decision_id} is a {incident.kind!r} record, not an incident",
            field="id",
        )
    if incident.resolution is not None:
        raise Conflict(
            f"incident {decision_id} is already resolved by decision {incident.resolution}",
            field="id",
            resolution=incident.resolution,
        )
    check = request.check
    details: dict[str, Any] = {
        "incident": {"id": decision_id, "kind": incident.kind, "summary": incident.summary},
        "note": request.note,
    }
    if check is None:
        details["no_check_reason"] = request.no_check_reason
        what = f"no check: {request.no_check_reason}"
    elif check.gate is not None:
        details["check"] = {"type": "gate", "gate": _check_gate(check.gate)}
        what = f"gate rule {check.gate} added to the gate policy of {incident.model}"
    else:
        assert check.monitor is not None and check.rule is not None  # the model's validator
        rule = check.rule.model_copy(update={"source": resolution_source(decision_id)})
        _add_rule(monitors, incident.model, check.monitor, rule, save=False)
        details["check"] = {"type": "monitor", "monitor": check.monitor, "rule": rule.model_dump()}
        what = f"monitor rule {rule.text} added to monitor {check.monitor}"
    entry = log.build(
        RESOLUTION_KIND,
        incident.model,
        f"resolved incident {decision_id} ({incident.kind}): {what}",
        details,
        actor=actor,
        deployment=incident.deployment,
        related={"incident": decision_id},
    ).model_copy(update={"resolves": decision_id})
    record = log.store.add_decisions([entry])[0]
    if check is not None and check.monitor is not None and check.rule is not None:
        # under the monitor's row lock: a rule another resolution adds meanwhile is kept;
        # created_by stays the monitor's author, the resolution names who added the rule
        rule = check.rule.model_copy(update={"source": resolution_source(decision_id)})
        _add_rule(monitors, incident.model, check.monitor, rule, save=True)
    return record
