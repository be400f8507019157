"""Module-level helpers acting on the innermost active run (``keel.log_metric`` …)."""

from __future__ import annotations

from collections.abc import Mapping

from keel.client._run import active_run

__all__ = ["log_metric", "log_metrics", "log_param", "log_params", "set_tag"]


def log_metric(key: str, value: float, step: int = 0) -> None:
    """Log a metric to the active run (inside ``with client.start_run(...)``)."""
    active_run().log_metric(key, value, step=step)


def log_metrics(metrics: Mapping[str, float], step: int = 0) -> None:
    """Log several metrics to the active run."""
    active_run().log_metrics(metrics, step=step)


def log_param(key: str, value: object) -> None:
    """Log a param to the active run."""
    active_run().log_param(key, value)


def log_params(params: Mapping[str, object]) -> None:
    """Log several params to the active run."""
    active_run().log_params(params)


def set_tag(key: str, value: str) -> None:
    """Set a tag on the active run."""
    active_run().set_tag(key, value)
