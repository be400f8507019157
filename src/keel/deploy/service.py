"""Deployments as a service: create from a policy, read, promote, roll back, pause, resume.

Every change is a compare-and-set on the deployment's ``version`` written together with
its decision records (and, for a rollback, the bad prediction windows): of two concurrent
changes one wins and the other gets 409, and nothing is half-applied. The interval
evaluation (the controller) is in :mod:`keel.deploy.controller`.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import pandas as pd

from keel._models import invalid_field, now_ms
from keel.decisions.models import Decision
from keel.decisions.service import DecisionLog
from keel.deploy._changes import CHAMPION, ChangesMixin, Listener
from keel.deploy.armstats import METRICS
from keel.deploy.models import AliasMove, BadWindow, Deployment
from keel.deploy.policy import DeploymentPolicy, parse_policy
from keel.deploy.rollout import start
from keel.deploy.state import candidates, rollout_to_json, weights_for
from keel.deploy.timing import hold_start
from keel.errors import Conflict, InvalidInput, NotFound
from keel.registry.models import ModelStatus
from keel.registry.service import RegistryService

__all__ = ["DeploymentService", "DeploymentStore", "Listener"]

log = logging.getLogger("keel.deploy")


class DeploymentStore(Protocol):
    """Persistence of deployments (``keel.store.sql.deployments``)."""

    def create_deployment(
        self, deployment: Deployment, decisions: Sequence[Decision] = ()
    ) -> Deployment: ...
    def get_deployment(self, name: str) -> Deployment: ...
    def list_deployments(
        self, *, model: str | None = None, active_only: bool = False
    ) -> list[Deployment]: ...
    def update_deployment(
        self,
        name: str,
        expected_version: int,
        *,
        status: str,
        state: dict[str, Any],
        at_ms: int,
        decisions: Sequence[Decision] = (),
        bad_windows: Sequence[BadWindow] = (),
        alias: AliasMove | None = None,
    ) -> Deployment: ...
    def report_replica(
        self,
        name: str,
        replica: str,
        state_version: int,
        weights: dict[str, float],
        at_ms: int,
        shadow: dict[str, int] | None = None,
    ) -> None: ...
    def list_bad_windows(
        self, *, model: str | None = None, version: int | None = None, deployment: str | None = None
    ) -> list[BadWindow]: ...
    def acquire_lease(self, name: str, holder: str, ttl_ms: int, now_ms: int) -> bool: ...
    def release_lease(self, name: str, holder: str) -> None: ...


class DeploymentService(ChangesMixin):
    """Use cases of deployments over a store, the registry and the decision log."""

    def __init__(
        self,
        store: DeploymentStore,
        registry: RegistryService,
        decisions: DecisionLog,
        *,
        predictions_root: Path | None = None,
        labels: Callable[..., pd.DataFrame] | None = None,
        clock: Callable[[], int] = now_ms,
        guard_window_s: int = 600,
        lease_ttl_s: int = 60,
        replica_ttl_s: int = 120,
    ) -> None:
        self.store = store
        self.registry = registry
        self.decision_log = decisions
        self.predictions_root = predictions_root
        self.labels = labels
        self.clock = clock
        self.guard_window_s = guard_window_s
        self.lease_ttl_s = lease_ttl_s
        self.replica_ttl_s = replica_ttl_s
        from keel.deploy.checkpoints import checkpoint_listener

        # R-DEP-10: a stateful policy's checkpoint at each boundary.
        self._listeners: list[Listener] = [checkpoint_listener(self)]
        self._last_listeners: list[Listener] = []
        # replica id -> its gateway's shadow-copy counts of one deployment (arm:outcome)
        self._shadow_sources: dict[str, Callable[[str], dict[str, int]]] = {}
        #: Loads a version's model (set by ``keel.services``: the one loader, honouring
        #: allow_pickle and the trusted classes); replay needs it.
        self.model_loader: Callable[[Any], Any] | None = None

    def create(
        self, policy: Mapping[str, Any] | DeploymentPolicy, actor: str | None = None
    ) -> Deployment:
        """Create a deployment from a policy (the JSON/YAML keys); starts its rollout now.

        Raises InvalidInput naming the field (unknown key, weights, roles, an arm's unknown
        ``arms[i].version``/``alias``, an unsupported ``guardrails.metric.name``), Conflict
        when the name is taken or the model already has an unfinished deployment.
        """
        checked = policy if isinstance(policy, DeploymentPolicy) else parse_policy(policy)
        rules: list[tuple[str, Any]] = [("guardrails.metric.name", checked.guardrails.metric)] + [
            (f"guardrails.secondary[{i}].name", m)
            for i, m in enumerate(checked.guardrails.secondary)
        ]
        if checked.hypothesis is not None:
            rules.append(("hypothesis.metric", SimpleNamespace(name=checked.hypothesis.metric)))
        for field, rule in rules:
            if rule is not None:
                self.check_metric(field, rule.name)
        try:
            model = self.registry.get_model(checked.model)
        except NotFound:
            raise invalid_field("model", f"no registered model {checked.model!r}") from None
        versions = self._resolve_arms(checked)
        self._check_segments(checked, versions)
        busy = [d.name for d in self.store.list_deployments(model=checked.model, active_only=True)]
        if busy:
            raise Conflict(
                f"model {checked.model!r} already has an unfinished deployment {busy[0]!r}; "
                "promote, roll back or finish it first",
                field="model",
            )
        at = self.clock()
        rollouts = {name: start(checked, at) for name in candidates(checked)}
        # R-TRN-21: at a disallowed hour the primary keeps all traffic (deploy.timing)
        weights, timing, held = hold_start(self, checked, weights_for(checked, rollouts), at)
        state: dict[str, Any] = {
            "weights": weights,
            "versions": versions,
            "rollouts": {k: rollout_to_json(v) for k, v in rollouts.items()},
            "champion_before": model.aliases.get(CHAMPION),
            **timing,
        }
        from keel.deploy.plan import sample_plan

        # R-DEP-04: the samples each step needs for min_improvement (a warning, never a 422)
        if (plan := sample_plan(self, checked, versions, at)) is not None:
            state["plan"] = plan
        deployment = Deployment(
            name=checked.name,
            model=checked.model,
            strategy=checked.strategy,
            status="active",
            policy=checked.to_document(),
            state=state,
            version=1,
            created_by=actor,
            created_at_ms=at,
            updated_at_ms=at,
        )
        record = self.decision_log.build(
            "deployment_created",
            checked.model,
            f"{checked.strategy} deployment {checked.name!r} created: "
            + ", ".join(f"{arm}=v{v} {weights[arm]:g}%" for arm, v in versions.items()),
            {"policy": deployment.policy, "weights": weights, "versions": versions},
            actor or "unknown",
            checked.name,
            at_ms=at,
        )
        created = self.store.create_deployment(deployment, [record, *held])
        self.notify(created, "created")
        return created

    def check_metric(self, field: str, name: str) -> None:
        """InvalidInput naming ``field`` unless ``name`` is a metric the controller computes."""
        if name not in METRICS:
            known = ", ".join(sorted(METRICS))
            raise invalid_field(field, f"unknown metric {name!r} (known: {known})")

    def _resolve_arms(self, policy: DeploymentPolicy) -> dict[str, int]:
        versions: dict[str, int] = {}
        used: dict[int, int] = {}
        for i, arm in enumerate(policy.arms):
            field = f"arms[{i}].version" if arm.version is not None else f"arms[{i}].alias"
            try:
                if arm.version is not None:
                    found = self.registry.get_version(policy.model, arm.version)
                else:
                    found = self.registry.resolve(f"models:/{policy.model}@{arm.alias}")
            except NotFound:
                target = (
                    f"version {arm.version}" if arm.version is not None else f"alias {arm.alias!r}"
                )
                raise invalid_field(field, f"model {policy.model!r} has no {target}") from None
            if found.status is ModelStatus.ARCHIVED:
                raise invalid_field(field, f"{found.uri} is archived")
            if found.version in used:
                raise invalid_field(
                    field, f"arms[{used[found.version]}] already serves version {found.version}"
                )
            used[found.version] = i
            versions[str(arm.name)] = found.version
        return versions

    def _check_segments(self, policy: DeploymentPolicy, versions: dict[str, int]) -> None:
        """``analysis.segments`` must be inputs of the primary's signature (when it has one):
        a typo is refused now, not found missing in every decision record."""
        primary = self.registry.get_version(policy.model, versions[str(policy.arm("primary").name)])
        inputs = (primary.signature or {}).get("inputs")
        if not inputs:
            return
        known = {c["name"] for c in inputs}
        for i, column in enumerate(policy.analysis.segments or ()):
            if column not in known:
                raise invalid_field(
                    f"analysis.segments[{i}]",
                    f"{column!r} is not an input of {primary.uri} "
                    f"(inputs: {', '.join(sorted(known))})",
                )

    def get(self, name: str) -> Deployment:
        """One deployment with its replica reports, whether the rollout is complete (every
        replica reported within ``replica_ttl_s`` serves this version, R-DEP-06) and its
        step progress."""
        from keel.deploy.progress import progress_of

        found = self.store.get_deployment(name)
        ttl_ms, now = self.replica_ttl_s * 1000, self.clock()
        fresh = [r for r in found.replicas if now - r.reported_at_ms <= ttl_ms]
        complete = bool(fresh) and all(r.state_version == found.version for r in fresh)
        return found.model_copy(
            update={
                "complete": complete if fresh else None,
                "shadow_comparison": self._shadows(found),
                "progress": progress_of(self, found),
                **self._experiment_checks(found),
            }
        )

    def _experiment_checks(self, deployment: Deployment) -> dict[str, Any]:
        """Interference warnings (R-DEP-15) and, if stateful, checkpoints (R-DEP-10)."""
        from keel.deploy.checkpoints import checkpoints
        from keel.deploy.interference import interference_warnings, is_ranking

        policy = self.policy_of(deployment)
        tags = self.registry.get_model(deployment.model).tags
        ranking = any(
            is_ranking(self.registry.get_version(deployment.model, v), tags)
            for v in deployment.versions.values()
        )
        found: dict[str, Any] = {"warnings": interference_warnings(policy, ranking)}
        if policy.stateful is not None:
            found["checkpoints"] = checkpoints(self, deployment.name)
        return found

    def _shadows(self, deployment: Deployment) -> dict[str, dict[str, Any]] | None:
        """Each shadow arm (and a candidate with a shadow phase) against the primary, from
        the durable log since the deployment began, with its per-replica queue drops."""
        from keel.deploy.shadowcompare import compare_shadows, drops_by_replica

        policy = self.policy_of(deployment)
        arms = [str(a.name) for a in policy.arms if a.role == "shadow"]
        if policy.shadow is not None:
            arms += [a for a in candidates(policy) if a not in arms]
        if not arms:
            return None
        primary = str(policy.arm("primary").name)
        found: dict[str, dict[str, Any]] = {a: {} for a in arms}
        if self.predictions_root is not None:
            found = compare_shadows(
                self.predictions_root,
                deployment.model,
                deployment.name,
                primary,
                arms,
                deployment.created_at_ms,
                self.clock() + 1,
            )
        return {
            arm: {
                "version": deployment.versions.get(arm),
                **numbers,
                "drops": drops_by_replica(deployment.replicas, arm),
            }
            for arm, numbers in found.items()
        }

    def list(self, model: str | None = None) -> list[Deployment]:
        """Every deployment (of ``model``), by name."""
        return self.store.list_deployments(model=model)

    def decisions(self, name: str, limit: int = 100) -> builtins.list[Decision]:
        """The decision records of one deployment, newest first."""
        self.store.get_deployment(name)
        return self.decision_log.query(deployment=name, limit=limit)

    def report_replica(
        self, name: str, replica: str, state_version: int, weights: dict[str, float]
    ) -> None:
        """A gateway replica says what it serves for ``name`` (the routing calls this), with
        its shadow-copy counts when its gateway registered them (:meth:`add_shadow_source`)."""
        source = self._shadow_sources.get(replica)
        shadow = source(name) if source is not None else {}
        self.store.report_replica(name, replica, state_version, weights, self.clock(), shadow)

    def add_shadow_source(self, replica: str, counts: Callable[[str], dict[str, int]]) -> None:
        """``counts(deployment)``: replica ``replica``'s shadow-copy counts by ``arm:outcome``
        (the gateway's shadow queue registers this); sent with every replica report."""
        self._shadow_sources[replica] = counts

    def bad_windows(self, model: str, version: int | None = None) -> builtins.list[BadWindow]:
        """Windows of logged predictions from rolled-back arms: exclude them from training
        data (see :func:`keel.deploy.badwindows.exclude_bad_windows`)."""
        return self.store.list_bad_windows(model=model, version=version)

    def check_archive(self, model: str, version: int | None) -> None:
        """Registry archive guard: a version an unfinished deployment serves stays (409)."""
        for deployment in self.store.list_deployments(model=model, active_only=True):
            used = set(deployment.versions.values())
            if version is None or version in used:
                what = f"version {version}" if version is not None else "model"
                raise Conflict(
                    f"{what} of {model!r} is served by deployment {deployment.name!r}; "
                    "finish or roll it back first",
                    field="version" if version is not None else "status",
                    deployment=deployment.name,
                )

    def switch(self, name: str, actor: str | None = None, reason: str | None = None) -> Deployment:
        """A person's blue-green switch: all live traffic to green now, verify runs after it
        (:mod:`keel.deploy.bluegreen`); 409 naming the state unless active and not switched."""
        from keel.deploy.bluegreen import switch_to_green

        return switch_to_green(self, name, actor, reason)

    # ---- the controller ------------------------------------------------------------------
    def evaluate(self, name: str) -> Deployment | None:
        """One controller tick for ``name`` under its lease (see :mod:`keel.deploy.controller`);
        None when skipped (another process evaluating, not active, changed meanwhile)."""
        from keel.deploy.controller import evaluate_deployment

        return evaluate_deployment(self, name)

    def evaluate_all(self) -> dict[str, str]:
        """Evaluate every active deployment once (the periodic ``deploy.evaluate`` job)."""
        from keel.deploy.controller import evaluate_all

        return evaluate_all(self)

    def replay(
        self,
        name: str,
        versions: builtins.list[int],
        since: str | int = "7d",
        limit: int | None = None,
        synthetic: int | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Re-score the deployment's logged requests since ``since`` with ``versions``
        (R-TRK-11, :mod:`keel.deploy.replay`): agreement, PSI/KS, latency, metrics; with
        ``synthetic``, generated test cases too (:mod:`keel.deploy.synthetic`)."""
        from keel.deploy.replay import replay, resolve_versions

        deployment = self.store.get_deployment(name)
        if self.model_loader is None:
            raise InvalidInput("versions: no model loader configured", field="versions")
        return replay(
            root=self.predictions_root,
            model=deployment.model,
            deployment=name,
            versions=resolve_versions(self.registry, deployment.model, versions),
            since=since,
            limit=limit,
            load=self.model_loader,
            labels=self.labels,
            synthetic=synthetic,
            seed=seed,
        )

    def archive_expired(self, actor: str = "retention") -> builtins.list[dict[str, Any]]:
        """Archive previous champions whose retention passed (the daily ``deploy.retention``
        job; see :mod:`keel.deploy.retention`)."""
        from keel.deploy.retention import archive_expired

        return archive_expired(self, actor)
