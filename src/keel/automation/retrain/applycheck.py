"""Checks of a retraining's arguments that need the model itself, run when the job is queued
or the trigger carrying it is applied (the job kind's ``check``), so a mistake is a 422 then
rather than a failed job later."""

from __future__ import annotations

from typing import Any

from keel.automation.retrain.data import feature_columns
from keel.automation.retrain.spec import JobArgs, parse_job_args
from keel.errors import InvalidInput

__all__ = ["check_job"]


def check_job(services: Any, args: dict[str, Any]) -> None:
    """Parse ``args`` (InvalidInput naming the field) and check them against the model."""
    from keel.automation.retrain.updaters import check_updatable  # R-TRN-09

    job = parse_job_args(args)
    check_updatable(services, job)
    if services is not None:
        check_gate_features(services, job)


def check_gate_features(services: Any, job: JobArgs) -> None:
    """A ``shap_direction`` gate declares features by name: each must be one the retraining
    trains on (the spec's ``features``, else the serving version's signature). Skipped while
    the model has neither (the first retraining of a model registered without one)."""
    gates = job.retrain.gates or {}
    direction = gates.get("shap_direction") or {}
    expected = direction.get("expected") or {}
    if not expected or direction.get("enabled") is False:
        return
    try:
        features, _ = feature_columns(services, job.model, job.retrain)
    except InvalidInput:
        return  # no signature yet: the gate names a missing feature when it runs
    for name in expected:
        if name not in features:
            field = f"args.retrain.gates.shap_direction.expected.{name}"
            raise InvalidInput(
                f"{field}: {name!r} is not a feature {job.model} trains on "
                f"(features: {sorted(features)[:30]})",
                field=field,
            )
