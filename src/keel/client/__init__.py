"""keel's Python SDK: ``keel.Client`` over an embedded store or a keel server."""

from __future__ import annotations

from keel.client._client import Client
from keel.client._run import ActiveRun, active_run

__all__ = ["ActiveRun", "Client", "active_run"]
