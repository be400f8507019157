"""Serving gateway: model pool, micro-batching, prediction cache, protection, prediction log."""

from __future__ import annotations

from keel.serving.predlog import PredictionLog, PredictionLogStats
from keel.serving.predquery import CompactionReport, CorruptSegmentWarning, compact, predictions
from keel.serving.records import PredictionRecord

__all__ = [
    "CompactionReport",
    "CorruptSegmentWarning",
    "PredictionLog",
    "PredictionLogStats",
    "PredictionRecord",
    "compact",
    "predictions",
]
