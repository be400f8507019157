"""What a deployment route is: the arms one gateway serves for a deployment, built from its
stored state, and the request's ``routing_key`` that picks among them.

:class:`~keel.serving.deployroutes.DeploymentRoutes` keeps one :class:`DeploymentRoute` per
deployment and refreshes it; this module only builds and describes routes (no I/O).
Arms are chosen by :class:`keel.deploy.routing.Router`: sticky by a BLAKE2b hash of the
request's ``routing_key`` (the same arm in every process, replica and restart), uniform
per request without a key or with ``unit: request``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keel.deploy.routing import Router
from keel.errors import InvalidInput
from keel.serving import _json
from keel.serving.validation import MEMO_ENTRIES, MEMO_MAX_BODY

__all__ = [
    "EXPERIMENTAL_ROLES",
    "ArmRoute",
    "DeploymentRoute",
    "MAX_ROUTING_KEY",
    "StoredDeployment",
    "UNFINISHED",
    "build_route",
    "read_routing_key",
    "routing_key_of",
    "versions_left",
]

#: Longest routing key accepted (a user or session id, not a document).
MAX_ROUTING_KEY = 256
_KEY_FIELD = b'"routing_key"'
#: Statuses of a deployment still rolling out (``keel.deploy.models.Status``); the others
#: are finished: routes still answer by their final weights, without shadow copies.
UNFINISHED = frozenset({"active", "paused"})
#: Roles of the arms under test: run in the bulkhead's partition (R-DEP-19).
EXPERIMENTAL_ROLES = frozenset({"canary", "challenger", "shadow"})
_UNSEEN: Any = object()


class StoredDeployment(Protocol):
    """What the routes read of a stored deployment (``keel.deploy.models.Deployment``)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def policy(self) -> dict[str, Any]: ...
    @property
    def state(self) -> dict[str, Any]: ...
    @property
    def weights(self) -> dict[str, float]: ...
    @property
    def versions(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class ArmRoute:
    """One arm as served: its version, role and live weight (percent)."""

    name: str
    role: str
    version: int
    weight: float
    #: The prediction log's ``extra`` of rows answered by this arm (the route taken).
    extra: str
    #: First half of the rendered-hit memo's key ``(memo_prefix, body)``: an arm's answers
    #: carry its name, so they are never served for another arm (or the model route).
    memo_prefix: bytes
    #: ``extra`` of the rows a shadow copy logs.
    shadow_extra: str
    #: Whether its model calls run in the bulkhead's partition (``keel.serving.bulkhead``):
    #: an experimental role (canary, challenger, shadow) beside a primary that has traffic
    #: to protect, i.e. short of 100 % of the live traffic.
    confined: bool = False


@dataclass(frozen=True, slots=True)
class DeploymentRoute:
    """A deployment as one gateway serves it at one state version."""

    name: str
    model: str
    status: str
    state_version: int
    router: Router
    arms: dict[str, ArmRoute]
    shadows: tuple[ArmRoute, ...]
    queue_size: int
    #: The arm that falls back in for experimental arms (the bulkhead), if any.
    primary: ArmRoute | None = None
    #: Arms of an unfinished deployment with no live share now but that may get it at once
    #: (blue-green's green before the switch, blue after it): kept warm, never picked.
    standby: tuple[ArmRoute, ...] = ()
    # Sticky arms by exact small body (None: drawn per request): a repeated request skips
    # the JSON decode of its key and the BLAKE2b hash (~7 us a request, most of what a
    # deployment route added to a cache hit). A route is rebuilt on every state change,
    # so the memo never outlives the weights it was computed with.
    _picked: dict[bytes, ArmRoute | None] = field(default_factory=dict, repr=False, compare=False)

    def choose(self, key: str | None) -> ArmRoute:
        """The live arm answering a request with routing ``key`` (None: drawn at random)."""
        return self.arms[self.router.choose(key)]

    def pick(self, body: bytes) -> tuple[ArmRoute, Any]:
        """The arm answering ``body`` (by its ``routing_key``), and the body decoded from
        JSON when reading the key needed that (else None: the caller decodes it itself).

        Raises InvalidInput for a bad ``routing_key``. Remembers the last bodies of up to
        4 KB (as ``InputSpec.parse`` does) with their arm, or that their arm is drawn.
        """
        picked = self._picked
        arm = picked.get(body, _UNSEEN)
        if arm is None:  # no key, or ``unit: request``: drawn per request
            return self.arms[self.router.choose(None)], None
        if arm is not _UNSEEN:
            return arm, None
        key, decoded = read_routing_key(body)  # a bad key raises: never remembered
        sticky = key is not None and self.router.sticky
        chosen = self.choose(key if sticky else None)
        if len(body) <= MEMO_MAX_BODY:
            if len(picked) >= MEMO_ENTRIES:
                del picked[next(iter(picked))]  # the oldest (dicts keep insertion order)
            picked[body] = chosen if sticky else None
        return chosen, decoded

    def served_arm(self, name: str) -> ArmRoute:
        """The arm ``name`` among those served (live, standby or shadow); InvalidInput
        naming ``arms`` when this route does not serve it."""
        for arm in (*self.arms.values(), *self.standby, *self.shadows):
            if arm.name == name:
                return arm
        raise InvalidInput(f"deployment {self.name} serves no arm {name!r}", field="arms")

    @property
    def weights(self) -> dict[str, float]:
        """Arm → live percent, as reported to the service."""
        return {name: arm.weight for name, arm in self.arms.items()}

    def describe(self) -> dict[str, Any]:
        """The route for ``/v1/serving/status``."""
        return {
            "model": self.model,
            "status": self.status,
            "state_version": self.state_version,
            "sticky": self.router.sticky,
            "arms": {
                name: {"role": arm.role, "version": arm.version, "weight": arm.weight}
                for name, arm in self.arms.items()
            },
            "shadows": [arm.name for arm in self.shadows],
        }


def build_route(deployment: StoredDeployment) -> DeploymentRoute:
    """The route of a stored deployment: arms in policy order (primary first on the bucket
    ring, as :meth:`Router.for_policy` lays them out), weights and versions from its state.

    Shadow copies go to arms of role ``shadow`` and to candidates still in their shadow
    phase, until the deployment is finished.
    """
    policy = deployment.policy
    arms_doc: list[dict[str, Any]] = list(policy.get("arms") or [])
    weights, versions = deployment.weights, deployment.versions
    phases = {
        str(arm): str((state or {}).get("phase"))
        for arm, state in (deployment.state.get("rollouts") or {}).items()
    }
    ordered = sorted(arms_doc, key=lambda arm: arm.get("role") != "primary")  # stable
    arms: dict[str, ArmRoute] = {}
    shadows: list[ArmRoute] = []
    standby: list[ArmRoute] = []
    for doc in ordered:
        name = str(doc.get("name") or doc.get("role"))
        if name not in versions:
            continue
        taken = {"route": f"deployments:/{deployment.name}/{name}"}
        arm = ArmRoute(
            name,
            str(doc.get("role")),
            versions[name],
            weights.get(name, 0.0),
            json.dumps(taken),
            b"\0deployment\0%s\0%s\0" % (deployment.name.encode(), name.encode()),
            json.dumps({**taken, "shadow": True}),
            doc.get("role") in EXPERIMENTAL_ROLES and weights.get(name, 0.0) < 100,
        )
        shadowed = doc.get("role") == "shadow" or phases.get(name) == "shadow"
        if arm.weight > 0:
            arms[name] = arm
        elif shadowed and deployment.status in UNFINISHED:
            shadows.append(arm)
        elif deployment.status in UNFINISHED and phases.get(name) not in ("done", "rolled_back"):
            standby.append(arm)
    router = Router.build(
        deployment.name,
        [(name, arm.weight) for name, arm in arms.items()],
        sticky=policy.get("unit", "routing_key") == "routing_key",
        shadows=[arm.name for arm in shadows],
    )
    queue_size = int((policy.get("shadow") or {}).get("queue_size", 1000))
    primary = next((arm for arm in arms.values() if arm.role == "primary"), None)
    return DeploymentRoute(
        deployment.name,
        deployment.model,
        deployment.status,
        deployment.version,
        router,
        arms,
        tuple(shadows),
        queue_size,
        primary,
        tuple(standby),
    )


def routing_key_of(body: bytes) -> str | None:
    """The request's ``routing_key`` (None when absent); InvalidInput naming ``routing_key``
    when it is not a non-empty string (or integer) of at most 256 characters.

    Most bodies carry no key: one byte search answers them. A body that is not valid JSON
    gives None here; the request parser words its 400.
    """
    return read_routing_key(body)[0]


def read_routing_key(body: bytes) -> tuple[str | None, Any]:
    """:func:`routing_key_of` and the decoded body when it was decoded (else None), so
    that the request parser does not decode it again (``InputSpec.parse(decoded=)``)."""
    if _KEY_FIELD not in body:
        return None, None
    try:
        payload = _json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(payload, dict) or payload.get("routing_key") is None:
        return None, payload
    raw = payload["routing_key"]
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvalidInput(
            f"routing_key must be a string or an integer, got {type(raw).__name__}",
            field="routing_key",
        )
    key = str(raw)
    if not key or len(key) > MAX_ROUTING_KEY:
        raise InvalidInput(
            f"routing_key must have 1 to {MAX_ROUTING_KEY} characters", field="routing_key"
        )
    return key, payload


def versions_left(before: DeploymentRoute | None, after: DeploymentRoute) -> Sequence[int]:
    """Versions that served live traffic of ``before`` and serve none of ``after`` (their
    cached predictions are dropped: R-SRV-06)."""
    if before is None:
        return ()
    now = {arm.version for arm in after.arms.values()}
    return sorted({arm.version for arm in before.arms.values()} - now)
