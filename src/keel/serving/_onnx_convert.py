"""Converters behind :mod:`keel.serving.export`: keel model flavors → ONNX graphs, int8.

Each converter returns an ``onnx.ModelProto`` with one input per signature column (see
the :mod:`keel.serving.export` docstring); converter failures become InvalidInput.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput
from keel.registry.flavors import LoadedModel

__all__ = [
    "NUMERIC",
    "TEXT",
    "convert",
    "quantize_int8",
    "quiet_converters",
    "set_props",
    "with_metadata",
]

NUMERIC = {"double", "float", "long", "integer", "boolean"}
TEXT = {"string", "category"}
_QUANTIZED_OPS = {
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "QLinearMatMul",
    "ConvInteger",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeMatMul",
    "QGemm",
}
_CONVERT_ERRORS = (
    RuntimeError,
    NotImplementedError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
)


def convert(loaded: LoadedModel, signature: dict[str, Any], model_dir: Path) -> tuple[Any, str]:
    converters: dict[str, Callable[[LoadedModel, dict[str, Any]], Any]] = {
        "sklearn": _from_sklearn,
        "lightgbm": _from_lightgbm,
        "xgboost": _from_xgboost,
        "onnx": lambda _m, _s: _copy_onnx(model_dir),
    }
    convert = converters.get(loaded.flavor)
    if convert is None:
        raise InvalidInput(
            f"flavor {loaded.flavor!r} cannot be exported to ONNX; supported: "
            f"{', '.join(converters)}",
            field="flavor",
        )
    names = {"sklearn": "skl2onnx", "lightgbm": "onnxmltools", "xgboost": "onnxmltools"}
    try:
        with quiet_converters():
            proto = convert(loaded, signature)
        import onnx

        onnx.checker.check_model(proto)
    except InvalidInput:
        raise
    except Exception as exc:  # every converter has its own error types
        if not isinstance(exc, _CONVERT_ERRORS) and type(exc).__module__.split(".")[0] not in (
            "onnx",
            "skl2onnx",
            "onnxmltools",
            "onnxconverter_common",
        ):
            raise
        raise InvalidInput(
            f"cannot convert this {loaded.flavor} model ({type(loaded.native).__name__}) "
            f"to ONNX: {type(exc).__name__}: {exc}",
            field="model",
        ) from exc
    return proto, names.get(loaded.flavor, "copy")


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    # onnxruntime.quantization and the converters log advice at WARNING on the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _from_sklearn(loaded: LoadedModel, signature: dict[str, Any]) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.base import is_classifier

    types = [
        (
            c["name"],
            StringTensorType([None, 1]) if c["type"] in TEXT else FloatTensorType([None, 1]),
        )
        for c in signature["inputs"]
    ]
    options = {"zipmap": False} if is_classifier(loaded.native) else None
    return convert_sklearn(loaded.native, initial_types=types, options=options)


def _from_lightgbm(loaded: LoadedModel, signature: dict[str, Any]) -> Any:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = loaded.native
    order = booster.feature_name()
    by_lgb_name = {c["name"].replace(" ", "_"): c for c in signature["inputs"]}
    if set(by_lgb_name) != set(order):
        if len(order) != len(signature["inputs"]):
            raise InvalidInput(
                f"the booster has {len(order)} features, the signature {len(by_lgb_name)}",
                field="signature",
            )
        by_lgb_name = dict(zip(order, signature["inputs"], strict=True))
    columns = [by_lgb_name[name] for name in order]
    categorical = [c for c in columns if c["type"] in TEXT]
    levels = list(getattr(booster, "pandas_categorical", None) or [])
    if len(levels) != len(categorical):
        raise InvalidInput(
            f"the booster knows categories for {len(levels)} column(s) but the signature has "
            f"{len(categorical)} text/category column(s)",
            field="signature",
        )
    proto = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("keel_features", FloatTensorType([None, len(order)]))],
        zipmap=False,
    )
    mapping = {c["name"]: [str(v) for v in lv] for c, lv in zip(categorical, levels, strict=True)}
    return _prepend_columns(proto, columns, mapping)


def _from_xgboost(loaded: LoadedModel, signature: dict[str, Any]) -> Any:
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    text = [c["name"] for c in signature["inputs"] if c["type"] in TEXT]
    if text:
        raise InvalidInput(
            f"XGBoost models with text/category columns ({', '.join(text)}) cannot be "
            "exported: onnxmltools has no categorical splits for XGBoost",
            field="signature",
        )
    native = loaded.native
    source = native.get_booster() if isinstance(native, xgb.XGBModel) else native
    # onnxmltools reads features as f0, f1, ...: a copy without names keeps the order.
    booster = xgb.Booster()
    booster.load_model(bytearray(source.save_raw()))
    booster.feature_names = None
    order = list(source.feature_names or [c["name"] for c in signature["inputs"]])
    by_name = {c["name"]: c for c in signature["inputs"]}
    columns = [by_name[name] for name in order if name in by_name]
    if len(columns) != len(order):
        raise InvalidInput("the booster's features do not match the signature", field="signature")
    proto = onnxmltools.convert_xgboost(
        booster, initial_types=[("keel_features", FloatTensorType([None, len(order)]))]
    )
    return _prepend_columns(proto, columns, {})


def _prepend_columns(
    proto: Any, columns: list[dict[str, Any]], levels: dict[str, list[str]]
) -> Any:
    """Replace the graph's one feature-matrix input by one named input per column."""
    from onnx import TensorProto, helper

    graph = proto.graph
    target = graph.input[0].name
    inputs: list[Any] = []
    nodes: list[Any] = []
    parts: list[str] = []
    for column in columns:
        name = column["name"]
        if name in levels:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, [None, 1]))
            coded = f"keel_code_{len(nodes)}"
            nodes.append(
                helper.make_node(
                    "LabelEncoder",
                    [name],
                    [coded],
                    domain="ai.onnx.ml",
                    keys_strings=levels[name],
                    values_floats=[float(i) for i in range(len(levels[name]))],
                    default_float=float("nan"),
                )
            )
            parts.append(coded)
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 1]))
            parts.append(name)
    nodes.append(helper.make_node("Concat", parts, [target], axis=1))
    for output in graph.output:
        # onnxmltools declares the label output as [1]; it has one entry per row.
        dims = output.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"
    old_nodes = list(graph.node)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    opsets = {o.domain: o for o in proto.opset_import}
    if "ai.onnx.ml" in opsets and opsets["ai.onnx.ml"].version < 2:
        opsets["ai.onnx.ml"].version = 2  # LabelEncoder with float values
    if "" not in opsets and "ai.onnx" not in opsets:
        proto.opset_import.append(helper.make_opsetid("", 13))
    return proto


def _copy_onnx(model_dir: Path) -> Any:
    import onnx

    from keel.registry.flavors.onnx import MODEL_FILE

    return onnx.load(str(model_dir / MODEL_FILE))


def with_metadata(
    proto: Any, loaded: LoadedModel, signature: dict[str, Any], *, model: str, version: int
) -> Any:
    proto.producer_name = "keel"
    proto.doc_string = f"keel export of {model} v{version} ({loaded.flavor})"
    set_props(
        proto,
        {
            "keel.model": model,
            "keel.version": str(version),
            "keel.flavor": loaded.flavor,
            "keel.signature": json.dumps(signature),
            "keel.classes": json.dumps(loaded.classes),
            "keel.inputs": json.dumps([c["name"] for c in signature["inputs"]]),
        },
    )
    return proto


def set_props(proto: Any, props: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value


def quantize_int8(payload: bytes) -> tuple[bytes, str | None]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="keel-quant-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(payload)
        with quiet_converters():
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        quantized = target.read_bytes()
    ops = {node.op_type for node in onnx.load_from_string(quantized).graph.node}
    if ops & _QUANTIZED_OPS:
        return quantized, None
    kinds = sorted({n.op_type for n in onnx.load_from_string(payload).graph.node})
    return payload, (
        "int8 quantization does not apply to this model: its graph "
        f"({', '.join(kinds)}) has no MatMul/Gemm/Conv weights, which are all ONNX Runtime's "
        "dynamic quantizer quantizes (tree ensembles and linear models are single ai.onnx.ml "
        "operators). The file is fp32."
    )
