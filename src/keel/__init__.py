"""keel: keep machine-learning models correct in production.

>>> import keel
>>> sorted(keel.__all__)[:3]
['ActiveRun', 'Client', 'active_run']
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

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
from keel.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayTimeout,
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
