"""Any object of an importable class with a ``predict`` method.

The class is recorded as ``module:QualName``. A class that defines ``save(self, directory)``
and a classmethod ``load(cls, directory)`` stores itself; loading it imports the class's
module and runs its ``load``, so the class must be on the operator's exact allow-list
(``KEEL_TRUSTED_MODEL_CLASSES``): the name comes from ``keel_model.json``, which whoever
uploaded the model wrote. Any other object is pickled, and loading it needs ``allow_pickle``
because unpickling runs code from the file (``allow_pickle`` also trusts every class).
"""

from __future__ import annotations

import importlib
import inspect
import pickle
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.registry.flavors.base import LoadedModel, no_probabilities

__all__ = [
    "PICKLE_FILE",
    "PyfuncFlavor",
    "PyfuncModel",
    "class_path",
    "class_refused",
    "import_class",
]

PICKLE_FILE = "model.pkl"
MODEL_SUBDIR = "model"


def class_path(cls: type) -> str:
    """``module:QualName`` of a class; raises InvalidInput when it cannot be imported back."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise InvalidInput(
            f"class {path} cannot be imported by another process; define it in a module",
            field="model",
        )
    if import_class(path) is not cls:
        raise InvalidInput(f"importing {path} does not give back the model's class", field="model")
    return path


def import_class(path: str) -> type:
    """Import the class named ``module:QualName``; raises InvalidInput if that fails."""
    module_name, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidInput(f"cannot import model class {path}: {exc}", field="class") from exc
    if not isinstance(found, type):
        raise InvalidInput(f"{path} is not a class", field="class")
    return found


def _stores_itself(cls: type) -> bool:
    save = inspect.getattr_static(cls, "save", None)
    load = inspect.getattr_static(cls, "load", None)
    return inspect.isfunction(save) and isinstance(load, classmethod)


def pickle_refused(what: str) -> InvalidInput:
    """The error for loading a pickle without ``allow_pickle``."""
    return InvalidInput(
        f"{what} is stored as a pickle. Unpickling runs arbitrary code from the file, so keel "
        "refuses it by default. Load it only if you trust where it came from: set "
        "KEEL_ALLOW_PICKLE=true (Settings.allow_pickle) or pass allow_pickle=True.",
        field="allow_pickle",
    )


def class_refused(path: str) -> InvalidInput:
    """The error for loading a self-stored model whose class is not on the allow-list."""
    return InvalidInput(
        f"this python-function model names its class {path!r}; loading it imports that "
        "module and runs its code, so keel loads only classes listed exactly in "
        "KEEL_TRUSTED_MODEL_CLASSES (Settings.trusted_model_classes). Add the class there "
        "if you trust it.",
        field="class",
        model_class=path,
    )


class PyfuncModel(LoadedModel):
    """A loaded python-function model; ``predict`` is the object's own."""

    def __init__(self, native: Any) -> None:
        classes = getattr(native, "classes_", getattr(native, "classes", None))
        if not isinstance(classes, list | tuple | np.ndarray):
            classes = None
        super().__init__(
            native,
            flavor="pyfunc",
            classes=None if classes is None else np.asarray(classes).tolist(),
        )

    def _predict(self, X: Any) -> Any:
        return np.asarray(self.native.predict(X))

    def _predict_proba(self, X: Any) -> Any:
        if not callable(getattr(self.native, "predict_proba", None)):
            raise no_probabilities()
        return self.native.predict_proba(X)


class PyfuncFlavor:
    """Objects of importable classes with a ``predict`` method; the fallback flavor."""

    name = "pyfunc"

    def handles(self, model: object) -> bool:
        """True for any object with a callable ``predict`` that is not a class itself."""
        return not isinstance(model, type) and callable(getattr(model, "predict", None))

    def save(self, model: Any, directory: Path) -> dict[str, Any]:
        """Store the object with its own ``save``, or pickle it to ``model.pkl``."""
        cls = type(model)
        path = class_path(cls)
        if _stores_itself(cls):
            (directory / MODEL_SUBDIR).mkdir()
            model.save(directory / MODEL_SUBDIR)
            return {"class": path, "serialization": "custom", "directory": MODEL_SUBDIR}
        with (directory / PICKLE_FILE).open("wb") as out:
            pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
        return {"class": path, "serialization": "pickle", "file": PICKLE_FILE}

    def load(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        allow_pickle: bool,
        trusted_classes: Collection[str] = (),
    ) -> PyfuncModel:
        """Rebuild the object; a pickled one only when ``allow_pickle`` is true."""
        path = meta.get("class")
        if not isinstance(path, str):
            raise InvalidInput("pyfunc metadata names no class", field="class")
        serialization = meta.get("serialization")
        if serialization == "custom":
            if not allow_pickle and path not in trusted_classes:
                raise class_refused(path)
            cls = import_class(path)
            if not _stores_itself(cls):
                raise InvalidInput(
                    f"{path} no longer defines save(self, directory) and classmethod load",
                    field="class",
                )
            return PyfuncModel(cls.load(directory / MODEL_SUBDIR))  # type: ignore[attr-defined]
        if serialization != "pickle":
            raise InvalidInput(
                f"unknown pyfunc serialization {serialization!r}", field="serialization"
            )
        if not allow_pickle:
            raise pickle_refused(f"this pyfunc model ({path})")
        if not (directory / PICKLE_FILE).is_file():
            raise InvalidInput(
                f"model file {PICKLE_FILE} is missing from {directory}", field="path"
            )
        with (directory / PICKLE_FILE).open("rb") as stream:
            native = pickle.load(stream)
        return PyfuncModel(native)
