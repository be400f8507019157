"""Exploration at serving time (R-TRN-24): a model's explored share answered with a fixed action.

A model that decides what it later learns from (a hiring model sees outcomes only of the
candidates it accepted) needs a small random share of requests answered whatever it says,
so their outcomes are observed without its selection. A model's policy ``{share, action,
key}`` is stored on the registered model as the tag ``keel.exploration`` (JSON, like the
signal mapping of :mod:`keel.monitoring.signals`): it is the model's, not a deployment's,
because the hash is salted by the model name, the retraining reads the model's log across
versions and deployments, and a deployment is one rollout among many of that model.

For each answered row the gateway asks :func:`explore_rows`: the row is explored when its
routing key (the response's ``request_id``, or the row's ``entity_key``) falls in the share
by THE stable hash of the retraining, :func:`keel.automation.retrain.exploration.explored`
(salted by the model name), so a logged row's cohort can always be recomputed from its key.
An explored row is answered with ``action`` whatever the model said (the rule of the
propensity definition there: an explored row gets the action), and logged with the model's
own output, ``explore = true`` and its propensity; the response lists ``explored`` per row.

:class:`ExplorationTable` is the gateway's view of the policies: read when a model version
loads (so the first answer already explores), re-read every refresh interval (a change made
by another replica) and updated at once by :func:`set_exploration` in this process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keel._models import invalid_input
from keel.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from keel.registry.service import RegistryService

__all__ = [
    "EXPLORATION_TAG",
    "ExplorationPolicy",
    "ExplorationTable",
    "clear_exploration",
    "explore_rows",
    "get_exploration",
    "parse_exploration",
    "set_exploration",
]

log = logging.getLogger("keel.serving")

#: The registered model's tag holding its policy (JSON).
EXPLORATION_TAG = "keel.exploration"


class ExplorationPolicy(BaseModel):
    """A model's serving exploration: the share of requests answered with ``action``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(gt=0, lt=1, description="Share of requests explored, e.g. 0.05.")
    action: bool | int | float | str = Field(
        description="The answer an explored row gets (e.g. 1: accept)."
    )
    key: Literal["request_id", "entity_key"] = Field(
        default="request_id",
        description="The routing key hashed: the response's request_id (one per request) "
        "or each row's entity_key (stable across requests; rows without one never explore).",
    )

    @field_validator("action", mode="before")
    @classmethod
    def _present(cls, value: Any) -> Any:
        if value is None:  # a null answer is not an action a caller could take
            raise ValueError("must be a value (e.g. 1 or 'accept'), not null")
        return value


def parse_exploration(body: Any) -> ExplorationPolicy:
    """A checked policy; InvalidInput naming ``exploration.<field>`` (the one validator of
    REST, both SDK transports and the CLI)."""
    if isinstance(body, dict) and set(body) == {"exploration"}:
        body = body["exploration"]  # a YAML file may wrap the policy in ``exploration:``
    if not isinstance(body, dict):
        raise InvalidInput(
            "exploration: expected a mapping {share, action, key}", field="exploration"
        )
    try:
        return ExplorationPolicy.model_validate(body)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"] if exc.errors() else ()
        # the field itself, not a branch of its type union (``action.bool``)
        field = f"exploration.{loc[0]}" if loc else "exploration"
        reason = invalid_input(exc).message.split(": ", 1)[-1]
        raise InvalidInput(f"{field}: {reason}", field=field) from None


def set_exploration(registry: RegistryService, model: str, body: Any) -> ExplorationPolicy:
    """Validate ``body`` and store it on ``model`` (NotFound for an unknown model); the
    gateways of this process apply it at once, other replicas at their next refresh."""
    policy = parse_exploration(body)
    registry.set_model_tag(model, EXPLORATION_TAG, json.dumps(policy.model_dump(), sort_keys=True))
    _announce(registry, model, policy)
    return policy


def clear_exploration(registry: RegistryService, model: str) -> bool:
    """Turn ``model``'s exploration off; whether it had a policy (NotFound: unknown model)."""
    had = registry.set_model_tag(model, EXPLORATION_TAG, None)
    _announce(registry, model, None)
    return had


def get_exploration(registry: RegistryService, model: str) -> ExplorationPolicy | None:
    """``model``'s policy, or None when it explores nothing (NotFound: unknown model)."""
    text = registry.get_model(model).tags.get(EXPLORATION_TAG)
    return None if text is None else parse_exploration(json.loads(text))


def explore_rows(
    policy: ExplorationPolicy,
    model: str,
    request_id: str,
    entity_keys: Sequence[str | None] | None,
    outputs: Sequence[Any],
) -> tuple[list[Any], list[bool], list[float]]:
    """The answers of one request's rows under ``policy``, which rows were explored, and
    each row's propensity (the probability of the answer it got, exploration.py's rule).

    ``outputs`` are the model's; an explored row's answer is ``policy.action``.
    """
    # imported here: the retraining package is heavy and a gateway without a policy never
    # needs it; one hash and one propensity rule, shared with the retraining
    from keel.automation.retrain.exploration import explored, propensities

    n = len(outputs)
    if policy.key == "request_id":
        keys: Sequence[str | None] = [request_id] * n
    else:
        keys = entity_keys if entity_keys is not None else [None] * n
    flags = explored(keys, policy.share, model)
    weights = propensities(flags, outputs, policy.action, policy.share)
    answers = [policy.action if flag else out for flag, out in zip(flags, outputs, strict=True)]
    return answers, flags.tolist(), weights.tolist()


#: The tables of the gateways in this process, told of a change made here at once.
_TABLES: weakref.WeakSet[ExplorationTable] = weakref.WeakSet()


def _announce(registry: RegistryService, model: str, policy: ExplorationPolicy | None) -> None:
    for table in list(_TABLES):
        if table.registry is registry:
            table.apply(model, policy)


class ExplorationTable:
    """The policies of the models a gateway serves: ``policies[name]`` (absent: off).

    The gateway reads ``policies`` with one dict lookup per answer; nothing else is on the
    request path.
    """

    def __init__(self, registry: RegistryService, refresh_s: float) -> None:
        self.registry = registry
        self.refresh_s = refresh_s
        self.policies: dict[str, ExplorationPolicy] = {}
        _TABLES.add(self)

    def apply(self, model: str, policy: ExplorationPolicy | None) -> None:
        """Serve ``model`` with ``policy`` from the next answer on (None: off)."""
        if policy is None:
            self.policies.pop(model, None)
        else:
            self.policies[model] = policy

    def load(self, model: str) -> None:
        """Read ``model``'s policy now (a version just loaded: before its first answer)."""
        try:
            self.apply(model, get_exploration(self.registry, model))
        except (NotFound, InvalidInput, ValueError) as exc:
            log.error("exploration policy of %s unreadable, not exploring: %r", model, exc)
            self.apply(model, None)

    async def run(self, models: Any) -> None:
        """Re-read the policies of ``models()`` (names) every ``refresh_s`` until cancelled:
        a change stored by another replica reaches this one within the interval."""
        while True:
            await asyncio.sleep(self.refresh_s)
            for name in sorted(set(models())):
                try:
                    await asyncio.to_thread(self.load, name)
                except Exception:  # a failed read keeps the last policy; the next one retries
                    log.exception("exploration refresh of %s failed", name)

    def describe(self) -> dict[str, dict[str, Any]]:
        """The policies in force, for ``/v1/serving/status``."""
        return {name: policy.model_dump() for name, policy in sorted(self.policies.items())}
