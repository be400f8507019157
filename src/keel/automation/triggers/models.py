"""Trigger definitions: when to retrain a model, checked when applied (R-TRN-01…04, R-FEA-08).

A trigger names a model and a list of conditions combined with ``any`` (the default; the
seed's ``triggers:`` spelling) or ``all``; a list item may itself be ``{any: [...]}`` or
``{all: [...]}``. Each condition is one flat mapping whose ``metric`` says its kind:

===============================  ============================================================
metric                           fires when
===============================  ============================================================
accuracy, precision, recall,     the metric over ``window`` from realised labels is
f1, roc_auc (auc), mae, rmse     ``below`` a floor / ``above`` a ceiling, or fell by ``drop``
                                 (``threshold``) vs the ``baseline`` period before the window
feature_drift_<test>, drift_     the statistic (psi, ks, wasserstein, chi2, jensen_shannon,
score (= PSI), feature_drift     kl_divergence) is over ``threshold`` on any listed
                                 ``features``, or on at least ``min_features`` features
prediction_distribution_shift    PSI (or KS) of the outputs over ``window`` vs ``baseline``
new_labels                       more than ``threshold`` labelled rows since the last training
schedule                         ``cron`` fired since the trigger last fired
feature_change                   a feature view the model reads changed or was removed since
                                 the last training
manual                           someone asked (``evaluate --manual``, ``fire``)
code                             the retrain section's train code changed since the last
                                 training (its source hash), or a commit posted to
                                 ``fire`` differs from the one the last training recorded
===============================  ============================================================

``prerequisites`` (R-TRN-10) may block a met trigger, ``timing`` (R-TRN-21) defers it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from keel._documents import load_document
from keel._durations import DurationText, PositiveDurationText, parse_duration_s
from keel._models import Entity, invalid_input
from keel.automation.cron import validate_cron
from keel.automation.triggers.timing import Timing
from keel.errors import InvalidInput

__all__ = [
    "DRIFT_TESTS",
    "PERFORMANCE_METRICS",
    "Condition",
    "Prerequisites",
    "Trigger",
    "TriggerSpec",
    "parse_trigger",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
#: Performance metrics; True when lower is better.
PERFORMANCE_METRICS: dict[str, bool] = {
    "accuracy": False,
    "precision": False,
    "recall": False,
    "f1": False,
    "roc_auc": False,
    "mae": True,
    "rmse": True,
}
ALIASES = {
    "auc": "roc_auc",
    "model_accuracy": "accuracy",
    "drift_score": "feature_drift_psi",
    "feature_drift_js": "feature_drift_jensen_shannon",
    "prediction_shift": "prediction_distribution_shift",
    "new_data_samples": "new_labels",
    "new_labelled_rows": "new_labels",
}
DRIFT_TESTS = ("psi", "ks", "wasserstein", "chi2", "jensen_shannon", "kl_divergence")
OTHER_METRICS = (
    "feature_drift",
    "prediction_distribution_shift",
    "new_labels",
    "schedule",
    "feature_change",
    "manual",
    "code",
)
KNOWN = sorted(
    [*PERFORMANCE_METRICS, *ALIASES, *OTHER_METRICS, *(f"feature_drift_{t}" for t in DRIFT_TESTS)]
)
_KEYS_BY_KIND = {
    "performance": {"below", "above", "drop", "threshold", "window", "baseline", "min_labels"},
    "drift": {"threshold", "features", "min_features", "window", "min_samples"},
    "prediction_shift": {"threshold", "window", "baseline", "statistic", "min_samples"},
    "volume": {"threshold", "above"},
    "schedule": {"cron"},
    "feature_change": {"views"},
    "manual": set(),
    "code": set(),
}


class Condition(Entity):
    """One condition (see the module table), or a nested ``any``/``all`` group."""

    metric: str | None = None
    any: list[Condition] | None = Field(default=None, min_length=1, max_length=50)
    all: list[Condition] | None = Field(default=None, min_length=1, max_length=50)
    below: float | None = None
    above: float | None = None
    drop: float | None = Field(default=None, gt=0)
    threshold: float | None = Field(default=None, ge=0)
    window: PositiveDurationText | None = None
    baseline: PositiveDurationText | None = None
    features: list[str] | None = Field(default=None, min_length=1, max_length=1_000)
    min_features: int | None = Field(default=None, ge=1, le=10_000)
    statistic: Literal["psi", "ks"] | None = None
    min_labels: int = Field(default=30, ge=1, le=10_000_000)
    min_samples: int = Field(default=30, ge=1, le=10_000_000)
    cron: str | None = None
    views: list[str] | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        if value is None:
            return value
        name = ALIASES.get(value, value)
        if name not in KNOWN:
            raise ValueError(f"unknown metric {value!r} (known: {', '.join(KNOWN)})")
        return name

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            return validate_cron(value)
        except InvalidInput as exc:
            raise ValueError(exc.message.removeprefix("cron: ")) from None

    @property
    def kind(self) -> str:
        """performance, drift, prediction_shift, volume, schedule, feature_change, manual,
        code, or group."""
        metric = self.metric or ""
        if metric in PERFORMANCE_METRICS:
            return "performance"
        if metric.startswith("feature_drift"):
            return "drift"
        return {
            "prediction_distribution_shift": "prediction_shift",
            "new_labels": "volume",
            "schedule": "schedule",
            "feature_change": "feature_change",
            "manual": "manual",
            "code": "code",
        }.get(metric, "group")

    @property
    def test(self) -> str | None:
        """The drift test of a drift condition (None: monitoring's default choice)."""
        metric = self.metric or ""
        return (
            metric.removeprefix("feature_drift_") if metric.startswith("feature_drift_") else None
        )

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        given = {k for k in self.model_fields_set if getattr(self, k) is not None}
        if self.any is not None or self.all is not None:
            if given - {"any", "all"} or (self.any is not None and self.all is not None):
                raise ValueError("a group is {any: [...]} or {all: [...]} with nothing else")
            return self
        if self.metric is None:
            raise ValueError("each condition needs a metric (or is an any/all group)")
        kind = self.kind
        allowed = _KEYS_BY_KIND[kind] | {"metric"}
        extra = sorted(given - allowed - {"min_labels", "min_samples"})
        if extra:
            raise ValueError(f"{', '.join(extra)} not used by metric {self.metric}")
        if kind == "performance":
            bounds = [k for k in ("below", "above", "drop", "threshold") if k in given]
            if len(bounds) != 1:
                raise ValueError("give one of below, above, drop or threshold (= drop)")
        if kind == "volume" and self.threshold is None and self.above is None:
            raise ValueError("new_labels needs threshold (a number of rows)")
        if kind == "prediction_shift" and self.threshold is None:
            raise ValueError("prediction_distribution_shift needs threshold")
        if kind == "drift" and self.test is not None and self.threshold is None:
            raise ValueError(f"{self.metric} needs threshold")
        if kind == "drift" and self.features is not None and self.min_features is not None:
            raise ValueError("give features or min_features, not both")
        if kind == "schedule" and self.cron is None:
            raise ValueError("schedule needs cron (e.g. '@monthly' or '0 3 * * SUN')")
        return self


class Prerequisites(Entity):
    """Checked before firing (R-TRN-10, :mod:`keel.automation.triggers.prerequisites`).

    ``labels``: at least ``min_labels`` labelled rows in the window (``auto``: when a
    condition reads performance); ``rollback``: a version the model can go back to exists;
    ``max_minutes`` / ``max_cost``: budget for the retraining's expected compute (median
    duration of earlier retrainings, at ``cost_per_hour``); ``max_jobs``: fire only while
    fewer retraining jobs are queued or running; ``min_holdout``: rows (of both classes)
    the gates' holdout must have. Free disk for the training rows is always checked.
    """

    labels: bool | Literal["auto"] = "auto"
    rollback: bool = True
    min_labels: int = Field(default=30, ge=1, le=10_000_000)
    max_minutes: float | None = Field(default=None, gt=0)
    cost_per_hour: float | None = Field(default=None, ge=0)
    max_cost: float | None = Field(default=None, gt=0)
    max_jobs: int | None = Field(default=None, ge=1, le=1_000)
    min_holdout: int | None = Field(default=None, ge=1, le=10_000_000)

    @field_validator("max_cost")
    @classmethod
    def _cost(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("cost_per_hour") is None:
            raise ValueError("needs cost_per_hour (the price of one compute hour)")
        return value


class TriggerSpec(Entity):
    """What a user applies (YAML or JSON)."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1, max_length=256)
    version: str = Field(default="champion", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    monitor: str | None = Field(default=None, max_length=128)
    description: str | None = Field(default=None, max_length=2_000)
    any: list[Condition] | None = Field(default=None, min_length=1, max_length=50)
    all: list[Condition] | None = Field(default=None, min_length=1, max_length=50)
    triggers: list[Condition] | None = Field(default=None, min_length=1, max_length=50)
    window: PositiveDurationText = "7d"
    cooldown: DurationText = "1d"
    min_interval: DurationText = "0s"
    prerequisites: Prerequisites = Field(default_factory=Prerequisites)
    timing: Timing | None = None
    retrain: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_list(self) -> TriggerSpec:
        given = [k for k in ("any", "all", "triggers") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of any, all or triggers (= any)")
        return self

    @property
    def combine(self) -> Literal["any", "all"]:
        """How the top-level conditions combine."""
        return "all" if self.all is not None else "any"

    @property
    def conditions(self) -> list[Condition]:
        """The top-level conditions."""
        return self.all or self.any or self.triggers or []

    @property
    def field_name(self) -> str:
        """The key the conditions were given under (for error paths)."""
        return "all" if self.all is not None else "any" if self.any is not None else "triggers"

    def leaves(self) -> list[tuple[str, Condition]]:
        """Every non-group condition with its key path (``triggers[1]``, ``any[0].all[1]``)."""
        out: list[tuple[str, Condition]] = []

        def walk(path: str, item: Condition) -> None:
            if item.kind != "group":
                out.append((path, item))
                return
            key = "any" if item.any is not None else "all"
            for i, child in enumerate(item.any or item.all or []):
                walk(f"{path}.{key}[{i}]", child)

        for i, item in enumerate(self.conditions):
            walk(f"{self.field_name}[{i}]", item)
        return out

    def seconds(self, value: str | None) -> int:
        """A duration of this spec in seconds (the trigger's window when None)."""
        return parse_duration_s(value or self.window, field="window")


class Trigger(TriggerSpec):
    """A stored trigger and its last evaluation and firing."""

    created_by: str | None = None
    created_at_ms: int
    updated_at_ms: int
    last_evaluated_at_ms: int | None = None
    last_fired_at_ms: int | None = None
    last_job_id: str | None = None


def parse_trigger(data: Any) -> TriggerSpec:
    """A checked spec from a mapping (parsed YAML/JSON) or YAML/JSON text; InvalidInput
    naming the key path (``triggers[1].features``) otherwise."""
    if isinstance(data, str | bytes):
        data = load_document(data, field="body", json_when_braced=False)
    if not isinstance(data, dict):
        raise InvalidInput("body: expected a mapping with name, model and conditions", field="body")
    try:
        return TriggerSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc) from None
