"""keel's REST API (FastAPI)."""

from __future__ import annotations

from keel.api.app import create_app

__all__ = ["create_app"]
