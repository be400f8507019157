"""Cache invalidation events, shared between gateway replicas over Redis pub/sub.

An event names what to drop: every entry (``all``), a model, one version of it, the
predictions made for one entity (e.g. after its features changed: the feature store calls
:func:`publish_invalidation` with ``entity=``), an alias move (replicas re-read the
alias at once instead of at their next refresh), or a deployment change (replicas re-read
its routes at once: a rollback reaches every replica within a second). Entries in the
shared Redis cache are deleted by the publisher; every subscribed gateway drops the
matching entries of its own in-process cache.

>>> Invalidation.from_json(Invalidation("entity", model="churn", entity="c-42").to_json())
Invalidation(kind='entity', model='churn', version=None, entity='c-42', alias=None, \
deployment=None, origin=None)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from keel.errors import InvalidInput

__all__ = [
    "CHANNEL",
    "KINDS",
    "Invalidation",
    "deployment_publisher",
    "entity_publisher",
    "make_invalidation",
    "publish_invalidation",
]

CHANNEL = "keel:serving:events"
log = logging.getLogger("keel.serving")
KINDS = frozenset({"all", "model", "version", "entity", "alias", "deployment"})


@dataclass(frozen=True, slots=True)
class Invalidation:
    """What to drop; ``origin`` is the publishing gateway (it skips its own events)."""

    kind: str
    model: str | None = None
    version: int | None = None
    entity: str | None = None
    alias: str | None = None
    deployment: str | None = None
    origin: str | None = None

    def to_json(self) -> bytes:
        """The pub/sub message."""
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Invalidation:
        """Parse a message; raises InvalidInput for anything malformed."""
        try:
            raw: Any = json.loads(data)
        except ValueError as exc:
            raise InvalidInput(f"invalidation event is not JSON: {exc}", field="event") from exc
        if not isinstance(raw, dict):
            raise InvalidInput("invalidation event must be an object", field="event")
        version = raw.get("version")
        return make_invalidation(
            model=raw.get("model"),
            version=version if isinstance(version, int) else None,
            entity=raw.get("entity"),
            alias=raw.get("alias"),
            deployment=raw.get("deployment"),
            everything=raw.get("kind") == "all",
            origin=raw.get("origin"),
        )

    def matches(self, model: str, version: int) -> bool:
        """Whether entries of ``model`` version ``version`` fall under a model/version event."""
        if self.kind == "all":
            return True
        if self.kind == "model":
            return model == self.model
        if self.kind == "version":
            return model == self.model and version == self.version
        return False


def make_invalidation(
    *,
    model: str | None = None,
    version: int | None = None,
    entity: str | None = None,
    alias: str | None = None,
    deployment: str | None = None,
    everything: bool = False,
    origin: str | None = None,
) -> Invalidation:
    """Build and check an event from the options of the CLI and API.

    ``everything`` drops all entries; otherwise a ``model`` is needed, narrowed by
    ``version`` or ``entity`` (an entity event without a model applies to every model),
    or ``alias`` for an alias move; ``deployment`` alone for a deployment change.
    """
    named = (("model", model), ("entity", entity), ("alias", alias), ("deployment", deployment))
    for name, value in named:
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidInput(f"{name} must be a non-empty string", field=name)
    if version is not None and (not isinstance(version, int) or version < 1):
        raise InvalidInput("version must be a positive integer", field="version")
    if deployment is not None:
        if model or version or entity or alias or everything:
            raise InvalidInput("a deployment event takes only its name", field="deployment")
        return Invalidation("deployment", deployment=deployment, origin=origin)
    if everything:
        if model or version or entity or alias:
            raise InvalidInput("'all' takes no model, version, entity or alias", field="all")
        return Invalidation("all", origin=origin)
    if entity is not None:
        if version is not None or alias is not None:
            raise InvalidInput("an entity event takes only a model", field="entity")
        return Invalidation("entity", model=model, entity=entity, origin=origin)
    if model is None:
        raise InvalidInput("name a model (or all, or an entity)", field="model")
    if alias is not None:
        return Invalidation("alias", model=model, alias=alias, origin=origin)
    if version is not None:
        return Invalidation("version", model=model, version=version, origin=origin)
    return Invalidation("model", model=model, origin=origin)


def publish_invalidation(
    redis: Any,
    *,
    model: str | None = None,
    version: int | None = None,
    entity: str | None = None,
    alias: str | None = None,
    everything: bool = False,
) -> int:
    """Drop matching shared cache entries and tell every gateway replica; returns entries dropped.

    ``redis`` is a Redis URL or a ``redis.Redis`` client. This is the call for other parts
    of keel, e.g. the feature store after an entity's features change::

        publish_invalidation(settings.redis_url, model="churn", entity="customer-42")
    """
    import redis as redis_lib

    from keel.serving.cache import delete_shared

    event = make_invalidation(
        model=model, version=version, entity=entity, alias=alias, everything=everything
    )
    client = redis_lib.Redis.from_url(redis) if isinstance(redis, str) else redis
    try:
        dropped = delete_shared(client, event)
        client.publish(CHANNEL, event.to_json())
    finally:
        if isinstance(redis, str):
            client.close()
    return dropped


def entity_publisher(redis_url: str) -> Callable[[str | None], int]:
    """``publish(entity)``: drop one entity's cached predictions (of every model) on every
    replica; ``publish(None)``: drop them all. The feature store's pushes use it
    (``keel.features.invalidation``); returns the shared entries dropped."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url)

    def publish(entity: str | None) -> int:
        if entity is None:
            return publish_invalidation(client, everything=True)
        return publish_invalidation(client, entity=entity)

    return publish


def deployment_publisher(redis_url: str) -> Callable[[Any, str], None]:
    """A deployment-service listener telling every gateway replica about a change made in
    this process (the API, the CLI, the controller's worker): replicas re-read the
    deployment's routes at once. A rollback or promotion also drops the cached predictions
    of the versions left without traffic, shared and local (R-SRV-06). Best effort: on a
    Redis outage the replicas' periodic refresh still applies the change.
    """
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def publish(deployment: Any, event: str) -> None:
        try:
            client.publish(CHANNEL, make_invalidation(deployment=deployment.name).to_json())
            if event in ("rolled_back", "promoted"):
                idle = {
                    v for arm, v in deployment.versions.items() if not deployment.weights.get(arm)
                }
                for version in sorted(idle):
                    publish_invalidation(client, model=deployment.model, version=version)
        except redis_lib.RedisError as exc:
            log.warning("could not announce the change of deployment %s: %r", deployment.name, exc)

    return publish
