"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from keel.services import Services

__all__ = ["Actor", "Svc", "get_actor", "get_services"]


# Both dependencies are async on purpose: FastAPI runs a sync dependency in the
# thread pool, which costs a thread hop on every request for a dict lookup.
async def get_services(request: Request) -> Services:
    """The services the app was built with."""
    services: Services = request.app.state.services
    return services


async def get_actor(request: Request) -> str | None:
    """Who is calling: the token's user (KEEL_AUTH=on), else the unverified X-Keel-User hint."""
    user = getattr(request.state, "user", None)
    return str(user) if user else request.headers.get("x-keel-user")


Svc = Annotated[Services, Depends(get_services)]
Actor = Annotated[str | None, Depends(get_actor)]
