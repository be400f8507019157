"""Ready trigger definitions per domain and workload (R-TRN-07, R-TRN-08, R-TRN-03).

Seed 001 gives default retraining cadences by domain (ad-click daily, fraud weekly, demand
forecasting monthly, medical imaging quarterly) and trigger sets by workload (image
classifier, language model, recommender, on-device keyword spotter); seed 004 the churn
set. Each preset is a trigger mapping in the shape ``keel triggers apply`` takes, with a
placeholder model. Where a seed names a signal keel cannot measure from the prediction log
(perplexity, CTR against cohorts, false-wake rate, battery drain) the preset keeps the
measurable part and says what is left out in its ``description``; ``keel triggers preset
show NAME`` prints it as YAML to edit and apply.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from keel.errors import NotFound

__all__ = ["PRESETS", "Preset", "get_preset", "preset_yaml"]

#: The model and train function a preset names until ``--model``/``--train`` replace them
#: (applying a trigger checks that its ``retrain.train`` imports).
PLACEHOLDER_MODEL = "my-model"
PLACEHOLDER_TRAIN = "mypkg.train:train"


@dataclass(frozen=True)
class Preset:
    """One ready trigger: what it is for, the requirement it comes from, its mapping."""

    name: str
    kind: str  # "domain" (R-TRN-07 cadence) or "workload" (R-TRN-08 trigger set)
    source: str
    summary: str
    trigger: dict[str, Any]


def _preset(name: str, kind: str, source: str, summary: str, **trigger: Any) -> Preset:
    body = {"name": f"{name}-retrain", "model": PLACEHOLDER_MODEL, **trigger}
    body["retrain"] = {"train": PLACEHOLDER_TRAIN, "label": "label", **body.get("retrain", {})}
    return Preset(name, kind, source, summary, body)


_WEEKLY, _MONTHLY, _QUARTERLY, _DAILY = "0 0 * * 1", "@monthly", "0 0 1 */3 *", "@daily"
#: High-traffic daily retrainers wait for a quiet hour of week (R-TRN-21).
_OFF_PEAK = {"avoid_peak": {"percentile": 80, "weeks": 4}}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            "ad-click",
            "domain",
            "R-TRN-07",
            "ad-click models: retrain daily",
            description="R-TRN-07: ad-click models retrain daily.",
            any=[{"metric": "schedule", "cron": _DAILY}],
            cooldown="12h",
            timing=_OFF_PEAK,
        ),
        _preset(
            "fraud",
            "domain",
            "R-TRN-07, R-TRN-04",
            "fraud: weekly, or on seed 001's accuracy drop / PSI drift / prediction shift",
            description=(
                "R-TRN-07: fraud retrains weekly; R-TRN-04: accuracy drop 0.05 over 7d, "
                "PSI 0.2 on any feature, prediction shift 0.1 over 24h."
            ),
            any=[
                {"metric": "schedule", "cron": _WEEKLY},
                {"metric": "accuracy", "drop": 0.05, "window": "7d"},
                {"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 1},
                {"metric": "prediction_distribution_shift", "threshold": 0.1, "window": "24h"},
            ],
            cooldown="1d",
        ),
        _preset(
            "demand-forecasting",
            "domain",
            "R-TRN-07",
            "demand forecasting: monthly, or drift on 3+ features",
            description="R-TRN-07: demand forecasting retrains monthly.",
            any=[
                {"metric": "schedule", "cron": _MONTHLY},
                {"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 3},
            ],
            cooldown="7d",
        ),
        _preset(
            "medical-imaging",
            "domain",
            "R-TRN-07",
            "medical imaging: quarterly, always through a human approval",
            description="R-TRN-07: medical imaging retrains quarterly.",
            any=[{"metric": "schedule", "cron": _QUARTERLY}],
            cooldown="30d",
            retrain={"require_approval": True},
        ),
        _preset(
            "churn",
            "workload",
            "R-TRN-03, R-TRN-06",
            "seed 004's churn set: AUC < 0.78, drift on 3+ features, monthly, 10,000 new labels",
            description=(
                "R-TRN-03: AUC below 0.78, PSI drift on 3+ features, monthly, more than "
                "10,000 new labels; R-TRN-06: auto-promote only if AUC > 0.80."
            ),
            any=[
                {"metric": "auc", "below": 0.78},
                {"metric": "drift_score", "threshold": 0.01, "min_features": 3},
                {"metric": "schedule", "cron": _MONTHLY},
                {"metric": "new_labels", "threshold": 10_000},
            ],
            cooldown="1d",
            retrain={"gates": {"floor": {"min_auc": 0.80}}},
        ),
        _preset(
            "image-classifier",
            "workload",
            "R-TRN-08",
            "image classifier: holdout accuracy drop > 2% from baseline, about monthly",
            description="R-TRN-08: accuracy drop > 0.02 from the baseline period; ~monthly.",
            any=[
                {"metric": "accuracy", "drop": 0.02, "window": "7d", "baseline": "30d"},
                {"metric": "schedule", "cron": _MONTHLY},
            ],
            cooldown="7d",
        ),
        _preset(
            "language-model",
            "workload",
            "R-TRN-08",
            "language model: new vocabulary (input drift) or weekly",
            description=(
                "R-TRN-08: live perplexity up > 10% or new vocabulary, ~weekly. Perplexity "
                "is not measured from the prediction log: new vocabulary is read as drift "
                "(chi-squared) on the token features, plus the weekly schedule."
            ),
            any=[
                {"metric": "feature_drift_chi2", "threshold": 0.1, "min_features": 1},
                {"metric": "schedule", "cron": _WEEKLY},
            ],
            cooldown="2d",
        ),
        _preset(
            "recommender",
            "workload",
            "R-TRN-08",
            "recommender: conversion drop > 5% vs the previous cohort, catalog refresh, daily",
            description=(
                "R-TRN-08: CTR/CVR drop > 5% vs historical cohorts or catalog refresh, "
                "~daily. Labels are clicks/conversions: a relative precision drop of 0.05 vs "
                "the baseline week stands for CTR; a catalog refresh is a changed feature view."
            ),
            any=[
                {"metric": "precision", "drop": 0.05, "window": "1d", "baseline": "7d"},
                {"metric": "feature_change"},
                {"metric": "schedule", "cron": _DAILY},
            ],
            cooldown="12h",
            timing=_OFF_PEAK,
        ),
        _preset(
            "keyword-spotter",
            "workload",
            "R-TRN-08",
            "on-device keyword spotter: quarterly OTA, or a precision floor for false wakes",
            description=(
                "R-TRN-08: false-wake rate > 1% or battery drain over spec, ~quarterly OTA. "
                "False wakes lower precision (floor 0.99); battery drain is a device metric "
                "keel does not see."
            ),
            any=[
                {"metric": "precision", "below": 0.99, "window": "7d"},
                {"metric": "schedule", "cron": _QUARTERLY},
            ],
            cooldown="30d",
            retrain={"require_approval": True},
        ),
    )
}


def get_preset(
    name: str, model: str | None = None, train: str | None = None, label: str | None = None
) -> dict[str, Any]:
    """Preset ``name``'s trigger mapping (a copy), for ``model``, train function ``train``
    and label column ``label`` when given; NotFound listing the known names otherwise."""
    preset = PRESETS.get(name)
    if preset is None:
        raise NotFound(f"trigger preset {name!r} not found (known: {', '.join(PRESETS)})")
    body = copy.deepcopy(preset.trigger)
    if model:
        body["model"] = model
        body["name"] = f"{model}-{preset.name}-retrain"
    if train:
        body["retrain"]["train"] = train
    if label:
        body["retrain"]["label"] = label
    return body


def preset_yaml(
    name: str, model: str | None = None, train: str | None = None, label: str | None = None
) -> str:
    """Preset ``name`` as YAML, headed by a comment with its source (and, while they are
    placeholders, a reminder to set the model and train function)."""
    preset = PRESETS.get(name)
    body = get_preset(name, model, train, label)
    assert preset is not None  # get_preset raised otherwise
    head = f"# keel trigger preset {name!r} ({preset.source}): {preset.summary}\n"
    if body["model"] == PLACEHOLDER_MODEL or body["retrain"]["train"] == PLACEHOLDER_TRAIN:
        head += "# set model and retrain.train/label (or --model, --train, --label)\n"
    return head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)
