"""keel: keep machine-learning models correct in production.

>>> import keel
>>> sorted(keel.__all__)[:3]
['ActiveRun', 'Client', 'active_run']
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING as _TYPE_CHECKING

from keel.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
    InsufficientStorage,
    InvalidInput,
    KeelError,
    MethodNotAllowed,
    ModelError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)

if _TYPE_CHECKING:
    from keel.client import (
        ActiveRun,
        Client,
        active_run,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        set_tag,
    )

# The SDK names load on first use (PEP 562): the SDK pulls in pandas and the stores, and
# every `keel` CLI invocation imports this package first (#15.14: `keel version` ≤ 0.3 s).
_LAZY = frozenset(
    {
        "ActiveRun",
        "Client",
        "active_run",
        "log_metric",
        "log_metrics",
        "log_param",
        "log_params",
        "set_tag",
    }
)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import keel.client as _client

        value = getattr(_client, name)
        globals()[name] = value  # bound from now on: later lookups skip this hook
        return value
    raise AttributeError(f"module 'keel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


try:
    __version__ = _version("keelml")
except _PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = [
    "ActiveRun",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "GatewayTimeout",
    "InsufficientStorage",
    "InvalidInput",
    "KeelError",
    "MethodNotAllowed",
    "ModelError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "active_run",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
]
