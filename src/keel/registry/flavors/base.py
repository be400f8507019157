"""What every flavor provides: save a native model to a directory, load it back as a LoadedModel."""

from __future__ import annotations

import abc
import importlib.metadata
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = ["Flavor", "LoadedModel", "library_version", "no_probabilities"]


class LoadedModel(abc.ABC):
    """A model loaded from a keel model directory, with one prediction API for every flavor.

    ``predict`` returns a 1-D array: class labels for classifiers, values for regressors.
    ``predict_proba`` returns one column per entry of ``classes``. Both accept a DataFrame
    or a 2-D array; when the model knows its feature names, a DataFrame's columns are
    reordered to match (extra columns are ignored, missing ones raise InvalidInput).
    """

    def __init__(
        self,
        native: Any,
        *,
        flavor: str,
        classes: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> None:
        self.native = native
        self.flavor = flavor
        self.classes: list[Any] | None = None if classes is None else list(classes)
        self.feature_names: list[str] | None = list(feature_names) if feature_names else None
        # Set by keel.registry.packaging.load_model_dir from keel_model.json.
        self.signature: dict[str, Any] | None = None
        self.metadata: dict[str, Any] = {}
        # Set by keel.Client.load_model: the gateway's input preparation for a DataFrame
        # (InputSpec.typed_frame), so a loaded model sees what the served one sees (#15.23).
        self.prepare_frame: Callable[[pd.DataFrame], pd.DataFrame] | None = None

    def __repr__(self) -> str:
        return f"<LoadedModel flavor={self.flavor} native={type(self.native).__name__}>"

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class labels (classifiers) or predicted values (regressors), one per row."""
        result = np.asarray(self._predict(self._prepare(self._signed(X))))
        if result.ndim == 2 and result.shape[1] == 1:
            result = result[:, 0]
        return result

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n_rows, len(classes))``.

        Raises InvalidInput when the model does not output probabilities.
        """
        return np.asarray(self._predict_proba(self._prepare(self._signed(X))))

    def _signed(self, X: Any) -> Any:
        # Before a flavor's own renaming: the signature names the caller's columns.
        if self.prepare_frame is not None and isinstance(X, pd.DataFrame):
            return self.prepare_frame(X)
        return X

    @abc.abstractmethod
    def _predict(self, X: Any) -> Any:
        """Run the native model on prepared input."""

    def _predict_proba(self, X: Any) -> Any:
        raise no_probabilities()

    def _prepare(self, X: Any) -> Any:
        if isinstance(X, pd.DataFrame):
            if not self.feature_names:
                return X
            columns = {str(c) for c in X.columns}
            missing = [name for name in self.feature_names if name not in columns]
            if missing:
                raise InvalidInput(
                    f"input lacks column(s) {missing}",
                    field=missing[0],
                    expected=self.feature_names,
                )
            return X.set_axis([str(c) for c in X.columns], axis=1)[self.feature_names]
        if isinstance(X, np.ndarray):
            if X.ndim != 2:
                raise InvalidInput(f"expected a 2-D array, got {X.ndim}-D", field="input")
            if self.feature_names and X.shape[1] != len(self.feature_names):
                raise InvalidInput(
                    f"expected {len(self.feature_names)} columns, got {X.shape[1]}",
                    field="input",
                )
            return X
        raise InvalidInput(
            f"expected a pandas DataFrame or a numpy array, got {type(X).__name__}", field="input"
        )


def no_probabilities() -> InvalidInput:
    """The error raised by ``predict_proba`` on a model without probabilities."""
    return InvalidInput("model does not output probabilities", field="model")


class Flavor(Protocol):
    """How one kind of model is written to and read from a directory."""

    name: str

    def handles(self, model: object) -> bool:
        """Whether ``model`` is a native object this flavor can save."""
        ...

    def save(self, model: Any, directory: Path) -> dict[str, Any]:
        """Write the model's files into ``directory``; return JSON-safe flavor metadata."""
        ...

    def load(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        allow_pickle: bool,
        trusted_classes: Collection[str] = (),
    ) -> LoadedModel:
        """Read the files :meth:`save` wrote; ``meta`` is what it returned."""
        ...


def library_version(distribution: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
