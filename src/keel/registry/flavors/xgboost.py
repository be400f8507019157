"""XGBoost boosters and scikit-learn wrappers, stored as XGBoost's native JSON (no pickle)."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.registry.flavors.base import LoadedModel, library_version, no_probabilities

__all__ = ["XGBoostFlavor", "XGBoostModel"]

MODEL_FILE = "model.json"
# Wrapper classes load_model can rebuild; the class name comes from keel_model.json, so it
# is checked against this list rather than looked up freely.
WRAPPERS = frozenset(
    {"XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor", "XGBRanker"}
)
CLASSIFIER_OBJECTIVES = frozenset({"binary:logistic", "multi:softprob", "multi:softmax"})
INSTALL_HINT = "pip install 'keelml[xgboost]'"


class XGBoostModel(LoadedModel):
    """A loaded XGBoost model: the scikit-learn wrapper when it was saved as one, else a booster."""

    def __init__(self, native: Any, meta: dict[str, Any]) -> None:
        super().__init__(
            native,
            flavor="xgboost",
            classes=meta.get("classes") if meta.get("is_classifier") else None,
            feature_names=meta.get("feature_names"),
        )
        self._objective = str(meta.get("objective") or "")
        self._is_wrapper = meta.get("kind") in WRAPPERS

    def _booster_output(self, X: Any) -> np.ndarray:
        return np.asarray(self.native.inplace_predict(X))

    def _predict(self, X: Any) -> Any:
        if self._is_wrapper:
            return self.native.predict(X)
        out = self._booster_output(X)
        if self.classes is None or self._objective == "multi:softmax":
            return out
        proba = self._proba_from_booster(out)
        return np.asarray(self.classes)[np.argmax(proba, axis=1)]

    def _predict_proba(self, X: Any) -> Any:
        if self.classes is None:
            raise no_probabilities()
        if self._is_wrapper:
            return self.native.predict_proba(X)
        if self._objective == "multi:softmax":
            raise no_probabilities()
        return self._proba_from_booster(self._booster_output(X))

    @staticmethod
    def _proba_from_booster(out: np.ndarray) -> np.ndarray:
        return np.column_stack([1.0 - out, out]) if out.ndim == 1 else out


def _import_xgboost() -> Any:
    try:
        import xgboost
    except ImportError as exc:
        raise InvalidInput(f"the model needs xgboost: {INSTALL_HINT}", field="flavor") from exc
    return xgboost


class XGBoostFlavor:
    """``xgboost.Booster`` and the ``XGBClassifier`` / ``XGBRegressor`` wrappers."""

    name = "xgboost"

    def handles(self, model: object) -> bool:
        """True for an XGBoost booster or scikit-learn wrapper."""
        xgb = sys.modules.get("xgboost")
        return xgb is not None and isinstance(model, xgb.Booster | xgb.XGBModel)

    def save(self, model: Any, directory: Path) -> dict[str, Any]:
        """Write ``model.json`` and describe the model's classes and features."""
        import xgboost as xgb
        from sklearn.exceptions import NotFittedError

        kind = type(model).__name__
        if isinstance(model, xgb.XGBModel) and kind not in WRAPPERS:
            raise InvalidInput(
                f"cannot save a {kind}; supported: Booster, {', '.join(sorted(WRAPPERS))}",
                field="model",
            )
        try:
            booster = model.get_booster() if isinstance(model, xgb.XGBModel) else model
        except NotFittedError as exc:
            raise InvalidInput(f"the {kind} is not fitted", field="model") from exc
        learner = json.loads(booster.save_config())["learner"]
        objective = learner["objective"]["name"]
        classes: list[Any] | None = None
        if isinstance(model, xgb.XGBClassifier):
            classes = np.asarray(model.classes_).tolist()
        elif objective in CLASSIFIER_OBJECTIVES:
            # A bare booster was trained on labels 0..k-1.
            n_classes = int(learner["learner_model_param"]["num_class"])
            classes = list(range(max(2, n_classes)))
        model.save_model(directory / MODEL_FILE)
        return {
            "file": MODEL_FILE,
            "kind": kind,
            "objective": objective,
            "is_classifier": classes is not None,
            "classes": classes,
            "feature_names": booster.feature_names,
            "xgboost_version": library_version("xgboost"),
        }

    def load(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        allow_pickle: bool,
        trusted_classes: Collection[str] = (),
    ) -> XGBoostModel:
        """Rebuild the wrapper or booster from ``model.json``."""
        xgb = _import_xgboost()
        path = directory / MODEL_FILE
        if not path.is_file():
            raise InvalidInput(f"model file {MODEL_FILE} is missing from {directory}", field="path")
        kind = meta.get("kind")
        native = getattr(xgb, kind)() if kind in WRAPPERS else xgb.Booster()
        try:
            native.load_model(path)
        except xgb.core.XGBoostError as exc:
            raise InvalidInput(
                f"{MODEL_FILE} is not an XGBoost model: {exc}", field="model"
            ) from exc
        return XGBoostModel(native, meta)
