"""One C call per batch for a LightGBM booster served from a float matrix.

``Booster.predict`` costs about 40 us of Python per call before the trees run: it builds
an ``_InnerPredictor`` (two C calls to read the iteration and class count), formats an
empty parameter string, asks the library how many outputs to expect (a third C call),
and only then predicts; every C call releases and takes back the GIL, which on a busy
server means waiting for the event loop each time. A deployment route with two arms
makes two model calls where the alias route makes one (each version batches only its
own requests), so this per-call cost weighs twice there (``benchmarks/bench_deploy_route.py``).

:class:`BoosterCall` makes the one ``LGBM_BoosterPredictForMat`` call with what it reads
once at load, and derives labels and probabilities from that one output exactly as
:class:`keel.registry.flavors.lightgbm.LightGBMModel` does (labels by ``argmax`` over the
stacked probabilities, ties to the first class), so a request that asks for both pays
for one pass over the trees instead of two. ``tests/serving/test_lgbmcall.py`` checks
the outputs equal the loaded model's ``predict`` / ``predict_proba``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from keel.registry.flavors.base import LoadedModel

__all__ = ["BoosterCall"]

_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_ROW_MAJOR = 1  # C_API_IS_ROW_MAJOR
_NORMAL = 0  # C_API_PREDICT_NORMAL
_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


class BoosterCall:
    """Predicts float64 row-major matrices with one C call (see the module docstring)."""

    def __init__(self, native: Any, lib: Any, check: Any, classes: list[Any] | None) -> None:
        self._native = native
        self._lib = lib
        self._check = check  # lightgbm's _safe_call: raises LightGBMError with its message
        self._classes = None if classes is None else np.asarray(classes)
        num_class = ctypes.c_int(0)
        check(lib.LGBM_BoosterGetNumClasses(native._handle, ctypes.byref(num_class)))
        self._per_row = num_class.value
        self._parameter = ctypes.c_char_p(b"")

    @classmethod
    def of(cls, model: LoadedModel) -> BoosterCall | None:
        """The call for a LightGBM booster whose outputs it reproduces, else None (the
        model's own ``predict`` is used)."""
        if model.flavor != "lightgbm":
            return None
        try:
            from lightgbm import Booster, basic
        except ImportError:
            return None
        lib, safe_call = getattr(basic, "_LIB", None), getattr(basic, "_safe_call", None)
        if lib is None or safe_call is None:  # another LightGBM layout: its public API serves
            return None
        if not isinstance(model.native, Booster):
            return None
        try:
            call = cls(model.native, lib, safe_call, model.classes)
        except Exception:  # a library without this entry point: the public API still works
            return None
        classes = model.classes
        if classes is None:
            fits = call._per_row == 1  # a regressor: one value per row
        else:
            # binary: P(class 1) per row; multiclass: one column per class
            fits = len(classes) == (2 if call._per_row == 1 else call._per_row)
        return call if fits else None

    def __call__(self, matrix: np.ndarray, probabilities: bool) -> tuple[list[Any], Any]:
        """Labels (or values) of the rows of ``matrix`` and, when asked, the probability
        rows (numpy, one column per class)."""
        rows, width = matrix.shape
        per_row = self._per_row
        out = np.empty(rows * per_row, dtype=np.float64)
        written = ctypes.c_int64(0)
        best = self._native.best_iteration  # what Booster.predict uses by default
        self._check(
            self._lib.LGBM_BoosterPredictForMat(
                self._native._handle,
                matrix.ctypes.data_as(_DOUBLE_P),
                ctypes.c_int(_FLOAT64),
                ctypes.c_int32(rows),
                ctypes.c_int32(width),
                ctypes.c_int(_ROW_MAJOR),
                ctypes.c_int(_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(best),
                self._parameter,
                ctypes.byref(written),
                out.ctypes.data_as(_DOUBLE_P),
            )
        )
        if written.value != out.size:
            raise ValueError(f"LightGBM wrote {written.value} outputs for {out.size}")
        classes = self._classes
        if classes is None:
            return out.tolist(), None
        if per_row == 1:
            # LightGBMModel stacks [1 - p, p] and takes the argmax: class 1 only when
            # p > 1 - p (a tie goes to class 0), compared in the same floating point.
            labels = classes[(out > 1.0 - out).astype(np.intp)]
            proba = np.column_stack([1.0 - out, out]) if probabilities else None
        else:
            proba = out.reshape(rows, per_row)
            labels = classes[np.argmax(proba, axis=1)]
            proba = proba if probabilities else None
        return labels.tolist(), proba
