"""REST routes for a model's serving exploration (R-TRN-24).

``PUT /v1/models/{name}/exploration`` stores ``{share, action, key}`` (422 naming
``exploration.<field>`` when it is not valid), ``GET`` reads it (404 when the model explores
nothing), ``DELETE`` turns it off. All go through :mod:`keel.serving.exploration`, as the
embedded SDK does; the gateways of this process apply a change at once, other replicas
within ``KEEL_SERVING_ALIAS_REFRESH_MS``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from keel.api.deps import Svc
from keel.errors import NotFound
from keel.serving.exploration import clear_exploration, get_exploration, set_exploration

router = APIRouter(prefix="/v1/models", tags=["registry"])


@router.put("/{name}/exploration")
def put_exploration(name: str, svc: Svc, body: Any = Body(...)) -> dict[str, Any]:
    """Explore ``share`` of the model's requests: they are answered with ``action`` and
    logged with ``explore`` and ``propensity``; the checked policy is returned."""
    return set_exploration(svc.registry, name, body).model_dump()


@router.get("/{name}/exploration")
def read_exploration(name: str, svc: Svc) -> dict[str, Any]:
    """The model's exploration policy; 404 when it explores nothing."""
    policy = get_exploration(svc.registry, name)
    if policy is None:
        raise NotFound(f"model {name!r} has no exploration policy", field="name")
    return policy.model_dump()


@router.delete("/{name}/exploration")
def delete_exploration(name: str, svc: Svc) -> dict[str, Any]:
    """Stop exploring; ``{"removed": false}`` when the model explored nothing."""
    return {"removed": clear_exploration(svc.registry, name)}
