"""HTTP transport: the SDK calls a keel server's REST API.

:class:`HttpTransport` is assembled from one part per area (tracking, registry,
monitoring, serving, features, operations), each a small module on the shared
plumbing of :class:`~keel.client._http_base.HttpBase`.
"""

from __future__ import annotations

from keel.client._http_features import HttpFeatures
from keel.client._http_monitoring import HttpMonitoring
from keel.client._http_registry import HttpRegistry
from keel.client._http_serving import HttpServing
from keel.client._http_tracking import HttpTracking
from keel.client._ops_http import HttpOps
from keel.client._transport import Transport

__all__ = ["HttpTransport"]


class HttpTransport(
    HttpTracking, HttpRegistry, HttpMonitoring, HttpServing, HttpFeatures, HttpOps, Transport
):
    """REST client over one thread-safe pool of kept-alive connections (see HttpBase)."""
