"""keel's Python SDK: ``keel.Client`` over an embedded store or a keel server."""

from __future__ import annotations

from keel.client._client import Client
from keel.client._fluent import log_metric, log_metrics, log_param, log_params, set_tag
from keel.client._run import ActiveRun, active_run

__all__ = [
    "ActiveRun",
    "Client",
    "active_run",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
]
