"""ONNX graphs, run with onnxruntime on the CPU."""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.registry.flavors.base import LoadedModel, library_version, no_probabilities

__all__ = ["OnnxFlavor", "OnnxModel"]

MODEL_FILE = "model.onnx"
INSTALL_HINT = "pip install 'keelml[onnx]'"
_NUMPY_TYPES: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
# Attributes of ai.onnx.ml classifier operators (LinearClassifier, TreeEnsembleClassifier,
# SVMClassifier, ZipMap, ...) that list the class labels in output order.
_CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints", "classlabels_strings")


class OnnxModel(LoadedModel):
    """An onnxruntime session fed from frames or arrays."""

    def __init__(self, session: Any, classes: list[Any] | None) -> None:
        super().__init__(session, flavor="onnx", classes=classes)
        self._inputs = session.get_inputs()
        self._outputs = [o.name for o in session.get_outputs()]

    def _feeds(self, X: Any) -> dict[str, np.ndarray]:
        if len(self._inputs) == 1:
            only = self._inputs[0]
            values = X.to_numpy() if isinstance(X, pd.DataFrame) else X
            return {only.name: np.asarray(values, dtype=_NUMPY_TYPES.get(only.type, np.float32))}
        # Several inputs: one per column, matched by name for frames, by position for arrays.
        if isinstance(X, pd.DataFrame):
            columns = {str(c): X[c] for c in X.columns}
            missing = [i.name for i in self._inputs if i.name not in columns]
            if missing:
                raise InvalidInput(
                    f"input lacks column(s) {missing} the ONNX graph needs",
                    field=missing[0],
                    expected=[i.name for i in self._inputs],
                )
            parts = [columns[i.name].to_numpy() for i in self._inputs]
        else:
            if X.shape[1] != len(self._inputs):
                raise InvalidInput(
                    f"expected {len(self._inputs)} columns, got {X.shape[1]}", field="input"
                )
            parts = [X[:, k] for k in range(X.shape[1])]
        return {
            spec.name: self._shaped(part, spec)
            for spec, part in zip(self._inputs, parts, strict=True)
        }

    @staticmethod
    def _shaped(values: np.ndarray, spec: Any) -> np.ndarray:
        array: np.ndarray = np.asarray(values, dtype=_NUMPY_TYPES.get(spec.type, np.float32))
        return array.reshape(-1, 1) if len(spec.shape or []) == 2 else array

    def _run(self, X: Any) -> list[Any]:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument

        try:
            return list(self.native.run(None, self._feeds(X)))
        except InvalidInput:
            raise
        except (InvalidArgument, Fail, ValueError, TypeError) as exc:
            raise InvalidInput(f"the ONNX model rejected the input: {exc}", field="input") from exc

    def _predict(self, X: Any) -> Any:
        return self._run(X)[0]

    def _predict_proba(self, X: Any) -> Any:
        outputs = self._run(X)
        index = next((k for k, name in enumerate(self._outputs) if "prob" in name.lower()), None)
        if index is None:
            raise no_probabilities()
        proba = outputs[index]
        if isinstance(proba, list):
            # ZipMap output: one {class: probability} dict per row.
            keys = self.classes if self.classes is not None else sorted(proba[0] if proba else {})
            return np.asarray([[row[k] for k in keys] for row in proba])
        return np.asarray(proba)


def _load_proto(model: Any) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes):
            return onnx.load_from_string(model)
        return onnx.load(str(model))
    except (OSError, ValueError, DecodeError) as exc:
        raise InvalidInput(f"not a readable ONNX model: {exc}", field="model") from exc


def _classes(proto: Any) -> list[Any] | None:
    import onnx.helper

    for node in proto.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return [v.decode() if isinstance(v, bytes) else int(v) for v in values]
    return None


class OnnxFlavor:
    """An ``onnx.ModelProto``, the bytes of an ONNX file, or a path to a ``.onnx`` file."""

    name = "onnx"

    def handles(self, model: object) -> bool:
        """True for an ONNX proto, bytes, or an existing ``.onnx`` path."""
        onnx = sys.modules.get("onnx")
        if onnx is not None and isinstance(model, onnx.ModelProto):
            return True
        if isinstance(model, str | Path):
            return str(model).endswith(".onnx") and Path(model).is_file()
        return isinstance(model, bytes)

    def save(self, model: Any, directory: Path) -> dict[str, Any]:
        """Check the graph and write ``model.onnx``."""
        import onnx

        proto = _load_proto(model)
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise InvalidInput(f"invalid ONNX model: {exc}", field="model") from exc
        onnx.save(proto, str(directory / MODEL_FILE))
        return {
            "file": MODEL_FILE,
            "inputs": [i.name for i in proto.graph.input],
            "outputs": [o.name for o in proto.graph.output],
            "opsets": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
            "classes": _classes(proto),
            "onnx_version": library_version("onnx"),
            "onnxruntime_version": library_version("onnxruntime"),
        }

    def load(
        self,
        directory: Path,
        meta: dict[str, Any],
        *,
        allow_pickle: bool,
        trusted_classes: Collection[str] = (),
    ) -> OnnxModel:
        """Open an onnxruntime session on ``model.onnx``."""
        try:
            import onnxruntime
        except ImportError as exc:
            raise InvalidInput(
                f"the model needs onnxruntime: {INSTALL_HINT}", field="flavor"
            ) from exc
        path = directory / MODEL_FILE
        if not path.is_file():
            raise InvalidInput(f"model file {MODEL_FILE} is missing from {directory}", field="path")
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except (
            ort_errors.Fail,
            ort_errors.InvalidArgument,
            ort_errors.InvalidGraph,
            ort_errors.InvalidProtobuf,
            ort_errors.NotImplemented,
        ) as exc:
            raise InvalidInput(
                f"onnxruntime cannot load {MODEL_FILE}: {exc}", field="model"
            ) from exc
        return OnnxModel(session, meta.get("classes"))
