"""REST routes for a model's implicit feedback signals (R-TRN-23).

``PUT /v1/models/{name}/signals`` stores the mapping (422 naming ``signals.<name>`` when it is
not valid), ``GET`` reads it (404 when the model has none). Both go through
:mod:`keel.monitoring.signals`, as the embedded SDK does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from keel.api.deps import Svc
from keel.errors import NotFound
from keel.monitoring.signals import get_signals, set_signals

router = APIRouter(prefix="/v1/models", tags=["registry"])


@router.put("/{name}/signals")
def put_signals(name: str, svc: Svc, mapping: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Store the model's signal mapping, e.g. ``{"watched": 1, "skipped": 0,
    "dwell_seconds": {"threshold": 30}}``; the checked mapping is returned."""
    return set_signals(svc.registry, name, mapping).to_dict()


@router.get("/{name}/signals")
def read_signals(name: str, svc: Svc) -> dict[str, Any]:
    """The model's signal mapping; 404 when it has none."""
    mapping = get_signals(svc.registry, name)
    if mapping is None:
        raise NotFound(f"model {name!r} has no signal mapping", field="name")
    return mapping.to_dict()
