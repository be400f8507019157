"""Flavors: how each kind of model is saved to a directory and loaded back.

:func:`flavor_for` picks the flavor of a native model, trying them in the order of
:data:`FLAVORS` (LightGBM and XGBoost before scikit-learn, whose estimator base class their
wrappers share; pyfunc last, as it takes anything with ``predict``).
"""

from __future__ import annotations

from keel.errors import InvalidInput
from keel.registry.flavors.base import Flavor, LoadedModel
from keel.registry.flavors.lightgbm import LightGBMFlavor
from keel.registry.flavors.onnx import OnnxFlavor
from keel.registry.flavors.pyfunc import PyfuncFlavor
from keel.registry.flavors.sklearn import SklearnFlavor
from keel.registry.flavors.xgboost import XGBoostFlavor

__all__ = ["FLAVORS", "Flavor", "LoadedModel", "flavor_for", "get_flavor"]

FLAVORS: dict[str, Flavor] = {
    flavor.name: flavor
    for flavor in (
        LightGBMFlavor(),
        XGBoostFlavor(),
        OnnxFlavor(),
        SklearnFlavor(),
        PyfuncFlavor(),
    )
}


def get_flavor(name: str) -> Flavor:
    """The flavor called ``name``; raises InvalidInput (field ``flavor``) for unknown names."""
    try:
        return FLAVORS[name]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"unknown flavor {name!r}; known flavors: {', '.join(FLAVORS)}",
            field="flavor",
            known=list(FLAVORS),
        ) from None


def flavor_for(model: object) -> Flavor:
    """The first flavor that can save ``model``; raises InvalidInput if none can."""
    for flavor in FLAVORS.values():
        if flavor.handles(model):
            return flavor
    raise InvalidInput(
        f"no flavor can save a {type(model).__name__}: expected a LightGBM, XGBoost, ONNX or "
        "scikit-learn model, or an object with a predict method",
        field="model",
    )
