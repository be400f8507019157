"""Deployments half of :class:`keel.Client`: create, read, promote, roll back, pause,
resume, switch (blue-green), decision records; and the decision log, with the resolution
of incidents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keel.client._transport import Transport
    from keel.decisions.models import Decision
    from keel.deploy.models import Deployment
    from keel.deploy.policy import DeploymentPolicy
    from keel.monitoring.rules import MonitorRule

__all__ = ["DeploymentsMixin"]


def _epoch_ms(moment: dt.datetime) -> int:
    """Epoch milliseconds of ``moment`` (naive = UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return int(aware.timestamp() * 1000)


class DeploymentsMixin:
    """Deployment methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def create_deployment(
        self, policy: Mapping[str, Any] | DeploymentPolicy | str | Path
    ) -> Deployment:
        """Create a deployment from a policy: a mapping of the YAML keys, a
        :class:`~keel.deploy.policy.DeploymentPolicy`, YAML/JSON text, or a file path.

        Checked here first, so both transports raise the same InvalidInput naming the key;
        the server also refuses unknown versions (``arms[i].version``) and taken names.
        """
        from keel.deploy.policy import DeploymentPolicy, load_policy, parse_policy

        if isinstance(policy, Path):
            checked = load_policy(policy.read_text())
        elif isinstance(policy, str):
            checked = load_policy(policy)
        elif isinstance(policy, DeploymentPolicy):
            checked = policy
        else:
            checked = parse_policy(policy)
        return self.transport.create_deployment(checked.to_document())

    def get_deployment(self, name: str) -> Deployment:
        """One deployment: policy, state (weights, step), replicas, whether complete."""
        return self.transport.get_deployment(name)

    def list_deployments(self, model: str | None = None) -> list[Deployment]:
        """Every deployment (of ``model``), by name."""
        return self.transport.list_deployments(model)

    def promote_deployment(
        self, name: str, *, arm: str | None = None, reason: str | None = None
    ) -> Deployment:
        """Give the candidate all traffic and move ``champion`` to it (Conflict on a
        concurrent change or alias move)."""
        return self._act(name, "promote", reason, arm)

    def rollback_deployment(self, name: str, reason: str | None = None) -> Deployment:
        """All traffic back to the primary now; the candidate's log window is marked bad."""
        return self._act(name, "rollback", reason, None)

    def pause_deployment(self, name: str, reason: str | None = None) -> Deployment:
        """Freeze the weights; the controller leaves it alone until resumed."""
        return self._act(name, "pause", reason, None)

    def resume_deployment(self, name: str, reason: str | None = None) -> Deployment:
        """Let the controller evaluate a paused deployment again."""
        return self._act(name, "resume", reason, None)

    def switch_deployment(self, name: str, reason: str | None = None) -> Deployment:
        """Blue-green: all live traffic to green now; the controller then verifies it and
        promotes, or switches back on a breach (Conflict naming the state unless an active
        blue-green deployment before its switch)."""
        return self._act(name, "switch", reason, None)

    def _act(self, name: str, action: str, reason: str | None, arm: str | None) -> Deployment:
        """One check of ``reason`` and ``arm`` for both transports (the REST body's model),
        then the action."""
        from pydantic import ValidationError

        from keel._models import invalid_input
        from keel.deploy.models import ActionBody

        try:
            body = ActionBody(reason=reason, arm=arm)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        return self.transport.deployment_action(name, action, body.reason, body.arm)

    def replay_deployment(
        self,
        name: str,
        versions: Sequence[int],
        since: str | int | dt.datetime = "7d",
        limit: int | None = None,
        synthetic: int | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Re-score the deployment's logged requests since ``since`` (epoch ms, ISO-8601, an
        age like ``7d`` or a datetime) with each of ``versions``, server-side (R-TRK-11).
        ``synthetic``: also score that many generated rows per case kind (marginal samples,
        edge values, missing and out-of-range values; seeded by ``seed``) with every version:
        the report's ``synthetic.cases``.

        Returns ``rows``, ``labelled`` and, per version, ``agreement`` with what was
        answered, ``psi``/``ks`` of the scores, ``latency_ms`` (p50/p99 per row) and
        ``metrics`` (accuracy/roc_auc or mae/rmse where labels exist). Checked here first,
        so both transports raise the same InvalidInput naming ``versions``, ``since`` or
        ``limit``; the server also refuses unknown versions and an empty window.
        """
        from keel.deploy.replay import check_request

        if isinstance(since, dt.datetime):
            since = _epoch_ms(since)
        request = check_request(versions, since, limit, synthetic, seed)
        return self.transport.replay_deployment(name, request)

    def deployment_decisions(self, name: str, limit: int = 100) -> list[Decision]:
        """The deployment's decision records, newest first."""
        return self.transport.deployment_decisions(name, limit)

    def decisions(
        self,
        *,
        model: str | None = None,
        kind: str | None = None,
        since: int | str | dt.datetime | None = None,
        deployment: str | None = None,
        limit: int = 100,
        open: bool | None = None,
    ) -> list[Decision]:
        """The decision log, newest first; ``since`` is epoch ms, ISO-8601 or an age (``7d``).

        ``open=True``: the incidents nobody has resolved yet (:mod:`keel.decisions.incidents`).
        """
        if isinstance(since, dt.datetime):
            since = _epoch_ms(since)
        text = None if since is None else str(since)
        return self.transport.decisions(model, kind, text, deployment, limit, open)

    def decision(self, decision_id: int) -> Decision:
        """One record of the decision log (``open`` and ``resolution`` for an incident)."""
        return self.transport.get_decision(decision_id)

    def resolve_decision(
        self,
        decision_id: int,
        *,
        monitor: str | None = None,
        rule: MonitorRule | Mapping[str, Any] | str | None = None,
        gate: Mapping[str, Any] | None = None,
        no_check_reason: str | None = None,
        note: str | None = None,
    ) -> Decision:
        """Resolve incident ``decision_id`` with a permanent check; the ``resolution`` record.

        The check is a monitor rule added to one of the model's monitors (``monitor`` and
        ``rule``: a :class:`~keel.monitoring.rules.MonitorRule`, its mapping, or text such as
        ``"null_share(TotalCharges) > 0.01"``) or a part of a gate policy applied to every
        later gate run of the model (``gate={"floor": {"min_auc": 0.82}}``); without one,
        ``no_check_reason`` (admins and owners only). Checked here first with the REST
        body's own model, so both transports raise the same InvalidInput naming ``check``,
        ``check.rule``, ``check.monitor`` or ``check.gate.<key>``; 409 (Conflict) when the
        incident is already resolved.
        """
        from keel.decisions.prevention import ResolveRequest

        check: dict[str, Any] | None = None
        if monitor is not None or rule is not None or gate is not None:
            check = {"monitor": monitor, "rule": rule, "gate": gate}
            check = {k: v for k, v in check.items() if v is not None}
        body = {"check": check, "no_check_reason": no_check_reason, "note": note}
        request = ResolveRequest.parse({k: v for k, v in body.items() if v is not None})
        return self.transport.resolve_decision(decision_id, request)
