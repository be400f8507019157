"""LightGBM boosters and scikit-learn wrappers, stored in LightGBM's own text format (no pickle)."""

from __future__ import annotations

import re
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.registry.flavors.base import LoadedModel, library_version, no_probabilities

__all__ = ["LightGBMFlavor", "LightGBMModel"]

MODEL_FILE = "model.txt"
CLASSIFIER_OBJECTIVES = frozenset({"binary", "multiclass", "multiclassova"})
# LightGBM names features Column_0, Column_1, ... when it was trained without names.
_GENERATED_NAME = re.compile(r"Column_\d+")


def _lightgbm_name(column: object) -> str:
    # LightGBM replaces spaces in feature names with underscores when it trains.
    return str(column).replace(" ", "_")


class LightGBMModel(LoadedModel):
    """A LightGBM booster that predicts labels for classifiers, like the scikit-learn wrapper."""

    def __init__(self, native: Any, meta: dict[str, Any]) -> None:
        names = meta.get("feature_names") or []
        real_names = not all(_GENERATED_NAME.fullmatch(n) for n in names)
        super().__init__(
            native,
            flavor="lightgbm",
            classes=meta.get("classes") if meta.get("is_classifier") else None,
            feature_names=names if real_names else None,
        )

    def _prepare(self, X: Any) -> Any:
        if isinstance(X, pd.DataFrame):
            X = X.set_axis([_lightgbm_name(c) for c in X.columns], axis=1)
        return super()._prepare(X)

    def _probabilities(self, X: Any) -> np.ndarray:
        raw = np.asarray(self.native.predict(X))
        # Binary objectives return P(class 1) only; the wrapper stacks both columns.
        return np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw

    def _predict(self, X: Any) -> Any:
        if self.classes is None:
            return self.native.predict(X)
        # argmax over the stacked columns, exactly as LGBMClassifier.predict decides.
        return np.asarray(self.classes)[np.argmax(self._probabilities(X), axis=1)]

    def _predict_proba(self, X: Any) -> Any:
        if self.classes is None:
            raise no_probabilities()
        return self._probabilities(X)


def _objective(model_file: Path) -> str | None:
    with model_file.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("objective="):
                return line.removeprefix("objective=").split()[0]
            if line.startswith("Tree="):
                break
    return None


class LightGBMFlavor:
    """``lightgbm.Booster`` and the ``LGBMClassifier`` / ``LGBMRegressor`` wrappers."""

    name = "lightgbm"

    def handles(self, model: object) -> bool:
        """True for a LightGBM booster or scikit-learn wrapper."""
        lgb = sys.modules.get("lightgbm")
        return lgb is not None and isinstance(model, lgb.Booster | lgb.LGBMModel)

    def save(self, model: Any, directory: Path) -> dict[str, Any]:
        """Write the booster as ``model.txt`` and describe its classes and features."""
        import lightgbm as lgb

        kind = type(model).__name__
        classes: list[Any] | None = None
        if isinstance(model, lgb.LGBMModel):
            if not model.__sklearn_is_fitted__():
                raise InvalidInput(f"the {kind} is not fitted", field="model")
            booster = model.booster_
            if isinstance(model, lgb.LGBMClassifier):
                classes = np.asarray(model.classes_).tolist()
        else:
            booster = model
        path = directory / MODEL_FILE
        booster.save_model(path)
        objective = _objective(path)
        is_classifier = (
            isinstance(model, lgb.LGBMClassifier)
            if isinstance(model, lgb.LGBMModel)
            else objective in CLASSIFIER_OBJECTIVES
        )
        if is_classifier and classes is None:
            # A bare booster was trained on labels 0..k-1.
            classes = list(range(max(2, booster.num_model_per_iteration())))
        return {
            "file": MODEL_FILE,
            "kind": kind,
            "objective": objective,
            "is_classifier": is_classifier,
            "classes": classes,
            "feature_names": booster.feature_name(),
            "lightgbm_version": library_version("lightgbm"),
        }

    def load(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        allow_pickle: bool,
        trusted_classes: Collection[str] = (),
    ) -> LightGBMModel:
        """Build a ``lightgbm.Booster`` from ``model.txt``."""
        try:
            import lightgbm as lgb
        except ImportError as exc:
            raise InvalidInput(
                "the model needs LightGBM: pip install 'keelml[lightgbm]'", field="flavor"
            ) from exc
        path = directory / MODEL_FILE
        if not path.is_file():
            raise InvalidInput(f"model file {MODEL_FILE} is missing from {directory}", field="path")
        try:
            booster = lgb.Booster(model_file=path)
        except lgb.basic.LightGBMError as exc:
            raise InvalidInput(
                f"{MODEL_FILE} is not a LightGBM model: {exc}", field="model"
            ) from exc
        return LightGBMModel(booster, meta)
