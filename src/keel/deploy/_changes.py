"""State changes of a deployment: pause, resume, roll back, promote (mixed into the service).

Each is a compare-and-set on the deployment's version written with its decision records
(and a rollback's bad windows, a promotion's champion alias move) in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel.decisions.models import Decision
from keel.deploy._refusal import (
    expected_champion,
    pause_refused,
    record_refused,
    vname,
    without_refusal,
)
from keel.deploy.models import FINISHED, AliasMove, BadWindow, Deployment
from keel.deploy.policy import DeploymentPolicy, parse_policy
from keel.deploy.rollout import RolloutState
from keel.deploy.state import rollout_from_json, rollout_to_json, weights_for
from keel.deploy.timing import pause_hold, resume_hold, settle
from keel.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from keel.decisions.service import DecisionLog
    from keel.deploy.service import DeploymentStore
    from keel.registry.service import RegistryService

__all__ = ["CHAMPION", "ChangesMixin", "Listener"]

#: Called after a committed change: ``(deployment after, event)``; event is ``created``,
#: ``evaluated``, ``promoted``, ``rolled_back``, ``paused`` or ``resumed``.
Listener = Callable[[Deployment, str], None]
CHAMPION = "champion"
log = logging.getLogger("keel.deploy")


class ChangesMixin:
    """Pause, resume, rollback and promotion of :class:`~keel.deploy.service.DeploymentService`."""

    store: DeploymentStore
    registry: RegistryService
    decision_log: DecisionLog
    clock: Callable[[], int]

    _listeners: list[Listener]
    _last_listeners: list[Listener]

    def add_listener(self, listener: Listener, *, last: bool = False) -> None:
        """Call ``listener(deployment, event)`` after every committed change (errors logged).

        ``last``: after every other listener, whenever added — for slow bookkeeping (the
        report archive) that must not delay the gateways' route updates and announcements.
        """
        (self._last_listeners if last else self._listeners).append(listener)

    def notify(self, deployment: Deployment, event: str) -> None:
        """Run the listeners; one that raises is logged, the change stands."""
        for listener in [*self._listeners, *self._last_listeners]:
            try:
                listener(deployment, event)
            except Exception:
                log.exception("deployment listener failed for %s (%s)", deployment.name, event)

    def rollouts(self, deployment: Deployment) -> dict[str, RolloutState]:
        """The candidates' rollout states."""
        return {k: rollout_from_json(v) for k, v in deployment.state["rollouts"].items()}

    def policy_of(self, deployment: Deployment) -> DeploymentPolicy:
        """The validated policy of a stored deployment."""
        return parse_policy(deployment.policy)

    def pause(self, name: str, actor: str | None = None, reason: str | None = None) -> Deployment:
        """Freeze the weights; the controller skips it until :meth:`resume`."""
        return self._set_status(name, "paused", ("active",), "pause", actor, reason)

    def resume(self, name: str, actor: str | None = None, reason: str | None = None) -> Deployment:
        """Let the controller evaluate a paused deployment again."""
        return self._set_status(name, "active", ("paused",), "resume", actor, reason)

    def _set_status(
        self,
        name: str,
        status: str,
        allowed: tuple[str, ...],
        kind: str,
        actor: str | None,
        reason: str | None,
    ) -> Deployment:
        current = self.store.get_deployment(name)
        if current.status not in allowed:
            raise Conflict(
                f"deployment {name!r} is {current.status}; cannot {kind}", field="status"
            )
        at = self.clock()
        state, record = self.status_change(current, status, actor or "unknown", reason, at)
        changed = self.store.update_deployment(
            name, current.version, status=status, state=state, at_ms=at, decisions=[record]
        )
        self.notify(changed, "paused" if status == "paused" else "resumed")
        return changed

    def status_change(
        self, current: Deployment, status: str, actor: str, reason: str | None, at: int
    ) -> tuple[dict[str, Any], Decision]:
        """The state and the ``pause``/``resume`` record of ``current`` paused (``status``
        ``paused``) or resumed (``active``) at ``at``, unwritten."""
        kind = "pause" if status == "paused" else "resume"
        summary = f"{kind}d by {actor}" + (f": {reason}" if reason else "")
        record = self.decision_log.build(
            kind,
            current.model,
            summary,
            {"reason": reason, "weights": current.weights},
            actor,
            current.name,
            at_ms=at,
        )
        # R-TRN-21: a pause ends a timing hold (nothing moves while paused); resume renews it
        if status == "paused":
            return {**current.state, **pause_hold(current, actor, at)}, record
        # resumed: the controller tries a refused promotion again, against the champion at
        # rollout start (keel.deploy._refusal), so the champion the pause named is dropped
        return {**without_refusal(current.state), **resume_hold(current, at)}, record

    def rollback(
        self,
        name: str,
        reason: str | None = None,
        actor: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        mark_bad_windows: bool = True,
    ) -> Deployment:
        """Send all traffic back to the primary now; the candidates' windows are marked bad
        (unless ``mark_bad_windows`` is false: a rollback drill's predictions were not bad).

        Effective for the next request once committed (replicas learn it from the listeners
        and their polls); 409 when the deployment is finished or changed concurrently.
        """
        current = self.store.get_deployment(name)
        if expected_version is not None and current.version != expected_version:
            raise Conflict(f"deployment {name!r} changed concurrently", field="name")
        if current.status in FINISHED:
            raise Conflict(f"deployment {name!r} is already {current.status}", field="status")
        policy = self.policy_of(current)
        at = self.clock()
        rollouts = {
            k: (
                v
                if v.phase in ("done", "rolled_back")
                else replace(v, phase="rolled_back", phase_started_ms=at)
            )
            for k, v in self.rollouts(current).items()
        }
        who = actor or "unknown"
        why = reason or "rolled back by hand"
        windows = (
            self.bad_windows_for(current, self.rollouts(current), at, why)
            if mark_bad_windows
            else []
        )
        state = {
            **current.state,
            "weights": weights_for(policy, rollouts),
            "rollouts": {k: rollout_to_json(v) for k, v in rollouts.items()},
            **settle(current, "rolled_back", who, at),  # R-TRN-21: no hold left pending
        }
        record = self.decision_log.build(
            "rollback",
            current.model,
            f"rolled back by {who}: {why}",
            {
                **dict(details or {}),
                "reason": why,
                "weights_before": current.weights,
                "weights": state["weights"],
                "bad_windows": [w.model_dump() for w in windows],
                **self.stateful_rollback_details(current, windows),
            },
            who,
            name,
            at_ms=at,
        )
        changed = self.store.update_deployment(
            name,
            current.version,
            status="rolled_back",
            state=state,
            at_ms=at,
            decisions=[record],
            bad_windows=windows,
        )
        self.notify(changed, "rolled_back")
        return changed

    def stateful_rollback_details(
        self, current: Deployment, windows: list[BadWindow]
    ) -> dict[str, Any]:
        """A stateful policy's session reset and contamination warning (R-DEP-10)."""
        from keel.deploy.checkpoints import stateful_rollback

        return stateful_rollback(self, current, windows)  # type: ignore[arg-type]

    def bad_windows_for(
        self, deployment: Deployment, rollouts: Mapping[str, RolloutState], at: int, reason: str
    ) -> list[BadWindow]:
        """One window per candidate still running: from its rollout start to ``at``."""
        return [
            BadWindow(
                deployment=deployment.name,
                model=deployment.model,
                arm=arm,
                version=deployment.versions[arm],
                from_ms=st.started_ms,
                to_ms=at,
                reason=reason,
                created_at_ms=at,
            )
            for arm, st in rollouts.items()
            if st.phase not in ("done", "rolled_back")
        ]

    def promote(
        self,
        name: str,
        actor: str | None = None,
        *,
        arm: str | None = None,
        reason: str | None = None,
    ) -> Deployment:
        """Give the candidate (``arm`` when an A/B has several) all traffic and move the
        model's ``champion`` alias to it, compare-and-set on the champion at rollout start
        (or, when the controller paused on its own refused promotion, on the champion that
        pause named: :mod:`keel.deploy._refusal`).

        409 when finished, changed concurrently, or the alias was moved meanwhile (then
        nothing changes; a ``promotion_refused`` record says why).
        """
        current = self.store.get_deployment(name)
        if current.status in FINISHED:
            raise Conflict(f"deployment {name!r} is already {current.status}", field="status")
        rollouts = self.rollouts(current)
        live = [k for k, v in rollouts.items() if v.phase != "rolled_back"]
        chosen = arm or (live[0] if live else None)
        if chosen not in live:
            raise InvalidInput(
                f"arm: {chosen!r} is not a candidate still running (of {live})", field="arm"
            )
        assert chosen is not None
        policy = self.policy_of(current)
        at = self.clock()
        steps = len(policy.steps) - 1 if policy.steps else rollouts[chosen].step
        rollouts[chosen] = replace(rollouts[chosen], phase="done", step=steps, phase_started_ms=at)
        details = {"reason": reason or "promoted by hand", "arm": chosen}
        return self.apply_promotion(
            current, policy, rollouts, chosen, at, actor or "unknown", details, []
        )

    def apply_promotion(
        self,
        current: Deployment,
        policy: DeploymentPolicy,
        rollouts: dict[str, RolloutState],
        arm: str,
        at: int,
        actor: str,
        details: Mapping[str, Any],
        decisions: list[Decision],
        *,
        pause_on_refusal: bool = False,
    ) -> Deployment:
        """Commit a promotion of ``arm``: the deployment's state, its records and the
        ``champion`` alias move, all in one transaction (see below); 409 when any of the
        two compare-and-sets fails, with nothing written but a ``promotion_refused``
        record when it was the alias's — and, with ``pause_on_refusal`` (the controller),
        the deployment paused for a person in the same transaction as that record.
        """
        # Why one transaction: the deployment's compare-and-set, the champion's
        # compare-and-set (expected: the champion when the rollout began, or the one a
        # pause on a refused promotion named: keel.deploy._refusal) and the
        # decision records commit together or not at all. Storing the promoted state
        # first and moving the alias after it let other replicas (they re-read every
        # second and on a Redis event) route all traffic to a candidate whose promotion
        # was then refused, and left a "promoted" record behind the undo; moving the
        # alias first would leave a champion with no promoted deployment after a crash.
        # Here a kill -9 at any point leaves either the whole promotion or none of it,
        # so a restarted controller simply evaluates the stored state again. Listeners
        # (gateways, Redis announcements) hear of it only after the commit.
        version = current.versions[arm]
        expected = expected_champion(current)
        keep_s = policy.retention.keep_previous_s
        state = {
            **without_refusal(current.state),
            "weights": weights_for(policy, rollouts),
            "rollouts": {k: rollout_to_json(v) for k, v in rollouts.items()},
            "previous_champion": expected,
            "retain_until_ms": at + keep_s * 1000,
            "retention_then": policy.retention.then,
            "alias_moved": True,  # with the state, always (False: a row of older keel)
            **settle(current, "promoted", actor, at),  # R-TRN-21: no hold left pending
        }
        record = self.decision_log.build(
            "promotion",
            current.model,
            f"{arm} (v{version}) promoted to {CHAMPION} by {actor}; previous champion "
            f"{vname(expected)} kept for {keep_s // 86400}d",
            {
                **dict(details),
                "version": version,
                "previous_champion": expected,
                "retain_until_ms": state["retain_until_ms"],
                "weights": state["weights"],
            },
            actor,
            current.name,
            at_ms=at,
        )
        move = AliasMove(
            current.model,
            CHAMPION,
            version,
            expected,
            actor,
            f"deployment {current.name!r} promoted {arm}",
        )
        try:
            done = self.store.update_deployment(
                current.name,
                current.version,
                status="promoted",
                state=state,
                at_ms=at,
                decisions=[*decisions, record],
                alias=move,
            )
        except Conflict as exc:
            if exc.field == "alias" and pause_on_refusal:
                # retrying on every tick would be refused alike: a person decides instead
                pause_refused(self, current, arm, version, expected, details, exc, at)
            elif exc.field != "name":  # the alias's compare-and-set (or an archived version)
                record_refused(self, current, arm, version, expected, actor, details, exc)
            raise
        self.registry.alias_moved(current.model, CHAMPION, version)
        self.notify(done, "promoted")
        return done
