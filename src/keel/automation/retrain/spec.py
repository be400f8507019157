"""The retrain spec: what a ``retrain.run`` job trains, on which rows, and what follows.

A trigger's ``retrain:`` section (or a manual enqueue) carries it as the job's ``retrain``
argument. It is checked when it is applied (the job is enqueued or the trigger saved): an
unknown key, a bad duration, fractions that do not add up, or a train function that cannot
be imported are an InvalidInput naming the field then, not at the first firing.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keel._durations import PositiveDuration, duration_s, parse_duration_s
from keel._models import invalid_input
from keel.automation.retrain.exploration import ExplorationSpec
from keel.automation.retrain.incremental_spec import IncrementalSpec, check_mode
from keel.automation.retrain.validation_spec import DataValidationSpec, validation_section
from keel.errors import InvalidInput

__all__ = [
    "DataSpec",
    "JobArgs",
    "ParamSpace",
    "RetrainSpec",
    "SearchSpec",
    "SplitSpec",
    "TrainFunction",
    "load_train_function",
    "parse_job_args",
    "rollout_policy",
]

#: ``train(frame, params) -> model``: ``frame`` holds the feature columns and the label
#: column; ``params`` the spec's params (plus a trial's, plus ``sample_weight``).
TrainFunction = Callable[[Any, dict[str, Any]], Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSpec(_Strict):
    """Fractions of the rows, oldest first: train, then validation, then holdout (R-TRN-22).

    ``holdout`` may instead be a duration (``180d``: the last six months, R-TRN-06): the
    rows within it of the newest row are the holdout, and the older rows are split into
    train and validation in the ratio ``train : validation``.
    """

    train: float = Field(default=0.70, gt=0, lt=1)
    validation: float = Field(default=0.15, ge=0, lt=1)
    holdout: float | str = 0.15

    @property
    def holdout_s(self) -> int | None:
        """The holdout as seconds before the newest row, or None for a fraction."""
        if isinstance(self.holdout, str):
            return parse_duration_s(self.holdout, field="holdout", positive=True)
        return None

    # A validator of its own rather than ``float | PositiveDurationText``: a union would
    # report one error per member, and would read "0.5" (text) as the fraction 0.5.
    @field_validator("holdout")
    @classmethod
    def _holdout(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            duration_s(value, positive=True)  # the reason alone; pydantic names the field
        elif not 0 < value < 1:
            raise ValueError("must be a fraction in (0, 1) or a duration like 180d")
        return value

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        if isinstance(self.holdout, str):
            return self  # train : validation split the rows before the holdout
        total = self.train + self.validation + self.holdout
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + holdout must be 1, got {total:g}")
        return self

    def describe(self) -> str:
        """``0.7/0.15/0.15`` or ``0.7/0.15/180d`` (the run's ``split`` param)."""
        holdout = self.holdout if isinstance(self.holdout, str) else f"{self.holdout:g}"
        return f"{self.train:g}/{self.validation:g}/{holdout}"


class ParamSpace(_Strict):
    """One searched hyperparameter: a float or int range (``log`` scale) or choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs choices")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("a float or int parameter needs low < high")
        return self


class SearchSpec(_Strict):
    """Optuna search (R-TRK-08): ``n_trials`` trials, each a child run, best by validation
    ``metric`` (AUC, higher is better; log loss and Brier score lower)."""

    n_trials: int = Field(ge=1, le=1000)
    space: dict[str, ParamSpace] = Field(min_length=1)
    metric: Literal["auc", "log_loss", "brier"] = "auc"
    seed: int = 0


class RetrainSpec(_Strict):
    """How to retrain one model (see docs/automation.md#retraining)."""

    train: str = Field(description="The train function, 'package.module:function'.")
    label: str = Field(default="label", min_length=1)
    features: list[str] | None = Field(default=None, description="Default: the signature's.")
    window_s: PositiveDuration = Field(default=90 * 86_400, alias="window")
    split: SplitSpec = Field(default_factory=SplitSpec)
    decay_per_day: float | None = Field(default=None, ge=0, description="λ of e^(−λ·age_days)")
    params: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec | None = None
    executor: Literal["inline", "process", "ray"] | None = Field(
        default=None, description="Where each fit runs; default: KEEL_EXECUTOR."
    )
    fit_timeout_s: PositiveDuration | None = Field(default=None, alias="fit_timeout")
    min_rows: int = Field(default=50, ge=2)
    positive: Any = 1
    gates: dict[str, Any] | None = None
    require_approval: bool = False
    rollout: dict[str, Any] | None = None
    experiment: str | None = None
    warm_start: bool = Field(
        default=False,
        description="Pass the champion's loaded model to train(frame, params, champion=...) "
        "(fine-tuning, R-TRN-26); the train function must accept ``champion``.",
    )
    data_validation: DataValidationSpec | None = Field(
        default_factory=DataValidationSpec,
        description="Checks on the training rows before training (R-CICD-07, R-TRN-21); "
        "false skips them.",
    )
    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        default=None,
        description="Class weights multiplied into sample_weight (R-TRN-22): 'balanced' "
        "(n / (classes x count)) or {label: weight}, labels written as text ('1').",
    )
    implicit_weight: float = Field(
        default=1.0, ge=0, description="Weight of labels derived from signals (0 leaves them out)."
    )
    exploration: ExplorationSpec | None = Field(
        default=None, description="The model's exploration share (R-TRN-24): IPW, cohorts."
    )
    selective_labels: bool = Field(
        default=False, description="Outcomes are observed only for cases the model accepted."
    )
    # R-TRN-09 (keel.automation.retrain.incremental); ``mode`` last: its check reads the rest
    update: str | None = Field(
        default=None, description="update(model, frame, params) -> model, for incremental mode"
    )
    incremental: IncrementalSpec = Field(default_factory=IncrementalSpec)
    mode: Literal["full", "incremental"] = Field(default="full", validate_default=True)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("update")
    @classmethod
    def _update_path(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                load_train_function(value, field="update")
            except InvalidInput as exc:
                raise ValueError(exc.message.removeprefix("update: ")) from None
        return value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str, info: ValidationInfo) -> str:
        return check_mode(value, info.data)

    @field_validator("class_weight")
    @classmethod
    def _class_weight(cls, value: Any) -> Any:
        if isinstance(value, dict) and (not value or any(w <= 0 for w in value.values())):
            raise ValueError("give each label a positive weight, or 'balanced'")
        return value

    @field_validator("data_validation", mode="before")
    @classmethod
    def _data_validation(cls, value: Any) -> Any:
        return validation_section(value)

    @field_validator("train")
    @classmethod
    def _train_path(cls, value: str) -> str:
        try:  # an import error names the field now, not at the job's first run
            load_train_function(value)
        except InvalidInput as exc:
            raise ValueError(exc.message.removeprefix("train: ")) from None
        return value

    @field_validator("warm_start")
    @classmethod
    def _warm_start(cls, value: bool, info: ValidationInfo) -> bool:
        train = info.data.get("train")
        if value and train is not None and not accepts_champion(load_train_function(train)):
            raise ValueError(
                f"{train} takes no 'champion' argument: define train(frame, params, "
                "champion=None) to warm-start from the champion"
            )
        return value

    @field_validator("gates")
    @classmethod
    def _gates(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from keel.automation.gates import parse_policy

            try:
                parse_policy(value)
            except InvalidInput as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("rollout")
    @classmethod
    def _rollout(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if "model" in value:
            raise ValueError("the rollout template takes its model from the job; drop 'model'")
        from keel.deploy.policy import parse_policy

        try:  # the deployment policy's own checks, now rather than after a retraining
            parse_policy(rollout_policy(value, "check", "check"))
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return value


class DataSpec(_Strict):
    """Which rows a trigger's diagnosis allows (R-TRN-20): all fresh rows in the window,
    or only those predicted at or after the change point ``since_ms``."""

    mode: Literal["fresh", "after_change_point"] = "fresh"
    since_ms: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _since(self) -> DataSpec:
        if self.mode == "after_change_point" and self.since_ms is None:
            raise ValueError("after_change_point needs since_ms")
        return self


class JobArgs(_Strict):
    """The arguments of a ``retrain.run`` job."""

    model: str = Field(min_length=1)
    retrain: RetrainSpec
    trigger: str | None = None
    decision_id: int | None = None
    data: DataSpec = Field(default_factory=DataSpec)
    #: what a trigger's ``fire`` request posted (commit, actor, ref): tags of the run
    source: dict[str, str] | None = None


def parse_job_args(args: Mapping[str, Any]) -> JobArgs:
    """Checked job arguments; InvalidInput naming ``args.<field>`` otherwise.

    A trigger may also give the retrain section's keys at the top level of the arguments
    (next to ``model``); they are read as the ``retrain`` section.
    """
    data = dict(args)
    flat = {k: data.pop(k) for k in list(data) if k in _SPEC_KEYS and k not in JobArgs.model_fields}
    if flat and "retrain" not in data:
        data["retrain"] = flat
    elif flat:
        raise InvalidInput(f"args: {sorted(flat)} belong in args.retrain", field="args")
    try:
        return JobArgs.model_validate(data)
    except ValidationError as exc:
        error = invalid_input(exc)
        raise InvalidInput(f"args.{error.message}", field=f"args.{error.field}") from None


_SPEC_KEYS = set(RetrainSpec.model_fields) | {"window", "fit_timeout"}


#: The new version's arm role per rollout strategy (keel.deploy.policy's rules).
_CANDIDATE_ROLE = {"canary": "canary", "shadow": "shadow", "ab": "challenger"}


def rollout_policy(template: Mapping[str, Any], model: str, name: str) -> dict[str, Any]:
    """A deployment policy from a rollout template: by default the champion serves as
    primary and the ``challenger`` alias is the strategy's candidate arm."""
    role = _CANDIDATE_ROLE.get(str(template.get("strategy")), "challenger")
    arms = [{"alias": "champion", "role": "primary"}, {"alias": "challenger", "role": role}]
    return {"name": name, "arms": arms, **template, "model": model}


def accepts_champion(function: Callable[..., Any]) -> bool:
    """Whether ``function`` takes a ``champion`` keyword (by name or ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return any(
        p.name == "champion" and p.kind != p.POSITIONAL_ONLY or p.kind == p.VAR_KEYWORD
        for p in parameters
    )


def load_train_function(path: str, field: str = "train") -> TrainFunction:
    """The callable at ``'package.module:function'``; InvalidInput naming ``field`` when the
    path is malformed, the module cannot be imported or has no such callable."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInput(
            f"{field}: expected 'package.module:function', got {path!r}", field=field
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself raised on import
        raise InvalidInput(
            f"{field}: cannot import {module_name!r}: {type(exc).__name__}: {exc}", field=field
        ) from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise InvalidInput(f"{field}: {module_name!r} has no {attr!r}", field=field)
    if not callable(target):
        raise InvalidInput(f"{field}: {path!r} is not callable", field=field)
    return target  # type: ignore[no-any-return]
