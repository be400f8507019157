"""scikit-learn estimators and pipelines, stored with skops instead of pickle.

Loading trusts only skops' default types and keel's exact allow-list
(:mod:`keel.registry.flavors.skops_trust`): a model file from elsewhere cannot make keel
import or call anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.registry.flavors.base import LoadedModel, library_version, no_probabilities
from keel.registry.flavors.skops_trust import check_model_contents, load_skops, refuse_untrusted

__all__ = ["SKOPS_FILE", "SklearnFlavor", "SklearnModel", "load_skops", "refuse_unservable_sklearn"]

SKOPS_FILE = "model.skops"


class SklearnModel(LoadedModel):
    """A loaded scikit-learn estimator or pipeline."""

    def __init__(self, native: Any) -> None:
        from sklearn.base import is_classifier

        classes = getattr(native, "classes_", None) if is_classifier(native) else None
        names = getattr(native, "feature_names_in_", None)
        super().__init__(
            native,
            flavor="sklearn",
            classes=None if classes is None else np.asarray(classes).tolist(),
            feature_names=None if names is None else [str(n) for n in names],
        )

    def _prepare(self, X: Any) -> Any:
        X = super()._prepare(X)
        # Give the estimator the input kind it was fitted on: scikit-learn warns when a model
        # fitted with feature names gets an array, or one fitted on an array gets a frame.
        if self.feature_names and isinstance(X, np.ndarray):
            return pd.DataFrame(X, columns=self.feature_names)
        if not self.feature_names and isinstance(X, pd.DataFrame):
            return X.to_numpy()
        return X

    def _predict(self, X: Any) -> Any:
        return self.native.predict(X)

    def _predict_proba(self, X: Any) -> Any:
        if self.classes is None or not hasattr(self.native, "predict_proba"):
            raise no_probabilities()
        return self.native.predict_proba(X)


class SklearnFlavor:
    """Fitted scikit-learn estimators with a ``predict`` method, pipelines included."""

    name = "sklearn"

    def handles(self, model: object) -> bool:
        """True for a scikit-learn estimator that can predict."""
        base = sys.modules.get("sklearn.base")
        return (
            base is not None
            and isinstance(model, base.BaseEstimator)
            and callable(getattr(model, "predict", None))
        )

    def save(self, model: Any, directory: Path) -> dict[str, Any]:
        """Write ``model.skops``."""
        import skops.io
        from sklearn.base import is_classifier
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(model)
        except NotFittedError as exc:
            raise InvalidInput(f"the {type(model).__name__} is not fitted", field="model") from exc
        skops.io.dump(model, directory / SKOPS_FILE)
        # what loading would refuse is refused now, when the model is logged, not served
        refuse_untrusted(directory / SKOPS_FILE)
        check_model_contents(model, source=SKOPS_FILE)
        loaded = SklearnModel(model)
        return {
            "file": SKOPS_FILE,
            "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
            "is_classifier": bool(is_classifier(model)),
            "classes": loaded.classes,
            "feature_names": loaded.feature_names,
            "sklearn_version": library_version("scikit-learn"),
            "skops_version": library_version("skops"),
        }

    def load(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        allow_pickle: bool,
        trusted_classes: Collection[str] = (),
    ) -> SklearnModel:
        """Read ``model.skops``, trusting only the allow-listed types."""
        path = directory / SKOPS_FILE
        if not path.is_file():
            raise InvalidInput(f"model file {path.name} is missing from {directory}", field="path")
        return SklearnModel(load_skops(path))


def refuse_unservable_sklearn(
    meta: Mapping[str, Any],
    prefix: str,
    stored: Mapping[str, str],
    path_of: Callable[[str], Path],
) -> None:
    """At registration: refuse (InvalidInput naming ``artifact_path``) a scikit-learn model
    whose skops file names types keel would refuse to load. ``meta`` is its
    ``keel_model.json``, ``stored`` maps its files to their sha256, ``path_of`` gives a
    blob's local path. Files uploaded as a run's artifacts reach the registry without
    log_model's own check, and would otherwise be refused only when a gateway loads them."""
    if meta.get("flavor") != "sklearn":
        return
    name = str(meta.get("file", SKOPS_FILE))
    shown = f"{prefix}/{name}" if prefix else name
    if name not in stored:
        raise InvalidInput(f"{shown} is missing", field="artifact_path")
    refuse_untrusted(path_of(stored[name]), name=shown, field="artifact_path")
