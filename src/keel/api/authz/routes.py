"""The app's HTTP routes as (method, template) pairs: what the policy is keyed on."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["flat_routes", "iter_routes"]


def flat_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(prefix, route)`` for every route, in matching order, included routers opened
    (FastAPI >= 0.160 keeps an included router as one nested entry)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            extra = str(getattr(context, "prefix", "") or "")
            yield from flat_routes(included.routes, prefix + extra)
        else:
            yield prefix, route


def iter_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """``(method, served path, route.path)`` of every HTTP route, routers included.

    :func:`keel.api.authz.authorize` keys the policy on ``route.path``; the two paths
    differ only for a router included with a ``prefix``, which the policy test forbids.
    """
    for outer, route in flat_routes(routes, prefix):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is not None and methods:
            for method in sorted(methods):
                if method != "HEAD":
                    yield method, outer + path, path
