"""The embedded SDK raises for a full disk what the HTTP client raises for a 507.

Over HTTP the server answers ``507 insufficient_storage`` and the client rebuilds
:class:`~keel.errors.InsufficientStorage` (:func:`keel.errors.error_from_payload`).
In-process there is no server in between, so the same rule
(:func:`keel.store.storage_full.storage_full`) is applied at the edge of the embedded
transport: the store's ``Unavailable`` for a full database disk, or a file write's
ENOSPC, leaves every public method as ``InsufficientStorage``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from keel.store.storage_full import storage_full

__all__ = ["full_disk_as_served"]

C = TypeVar("C", bound=type)


def _raising_as_served(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            full = storage_full(exc)
            if full is None or full is exc:
                raise
            raise full from exc

    return call


def full_disk_as_served(cls: C) -> C:
    """Class decorator: each public method of ``cls`` (inherited ones included) raises
    :class:`~keel.errors.InsufficientStorage` where the HTTP API would answer 507; every
    other exception passes unchanged."""
    for name in dir(cls):
        # getattr_static: a staticmethod or property is left alone, only plain methods wrap
        if not name.startswith("_") and inspect.isfunction(inspect.getattr_static(cls, name)):
            setattr(cls, name, _raising_as_served(getattr(cls, name)))
    return cls
