"""Retraining triggers: when to retrain a model, evaluated from durable state, every
evaluation recorded, the diagnosis deciding the action (issue #17)."""

from keel.automation.triggers.models import (
    Condition,
    Prerequisites,
    Trigger,
    TriggerSpec,
    parse_trigger,
)

__all__ = ["Condition", "Prerequisites", "Trigger", "TriggerSpec", "parse_trigger"]
