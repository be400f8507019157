"""Import an MLflow model directory (``MLmodel`` plus files) as a keel model directory.

MLflow does not need to be installed. Supported MLflow flavors are ``lightgbm`` (a native
``model.lgb`` booster, or a scikit-learn wrapper stored with skops or pickle) and ``sklearn``
(skops or pickle). Pickled models need ``allow_pickle``. Skops files are checked against
keel's own allow-list, never the ``skops_trusted_types`` the MLmodel file lists: that list
comes from the same untrusted artifact.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from keel.errors import InvalidInput
from keel.registry.flavors.pyfunc import pickle_refused
from keel.registry.flavors.sklearn import load_skops
from keel.registry.packaging import save_model_dir
from keel.registry.signature import COLUMN_TYPES, example_from_json

__all__ = ["SUPPORTED_FLAVORS", "import_mlflow_model"]

MLMODEL_FILE = "MLmodel"
SUPPORTED_FLAVORS = ("lightgbm", "sklearn")
_PICKLE_FORMATS = ("pickle", "cloudpickle")
_TENSOR_TYPES = {
    "float64": "double",
    "float32": "float",
    "int64": "long",
    "int32": "integer",
    "int16": "integer",
    "int8": "integer",
    "uint8": "integer",
    "bool": "boolean",
    "str": "string",
    "object": "string",
}


def import_mlflow_model(
    mlflow_dir: Path, target_dir: Path, *, allow_pickle: bool = False
) -> dict[str, Any]:
    """Convert the MLflow model in ``mlflow_dir`` into a keel model directory at ``target_dir``.

    Returns the new ``keel_model.json`` content, whose ``imported_from`` records the MLflow
    run id and flavors. Raises InvalidInput when ``MLmodel`` is missing (field ``path``),
    when no supported flavor is present (field ``flavor``), and for pickled models without
    ``allow_pickle`` (field ``allow_pickle``).
    """
    mlflow_dir = Path(mlflow_dir)
    mlmodel = _read_mlmodel(mlflow_dir)
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise InvalidInput(f"{mlflow_dir / MLMODEL_FILE} lists no flavors", field="path")
    if "lightgbm" in flavors:
        model = _load_lightgbm(mlflow_dir, flavors["lightgbm"], allow_pickle=allow_pickle)
    elif "sklearn" in flavors:
        model = _load_sklearn(mlflow_dir, flavors["sklearn"], allow_pickle=allow_pickle)
    else:
        raise InvalidInput(
            f"MLflow flavor(s) {', '.join(flavors)} cannot be imported; keel imports "
            f"{', '.join(SUPPORTED_FLAVORS)}",
            field="flavor",
            supported=list(SUPPORTED_FLAVORS),
            found=list(flavors),
        )
    imported_from: dict[str, Any] = {
        "format": "mlflow",
        "run_id": mlmodel.get("run_id"),
        "flavors": list(flavors),
        "mlflow_version": mlmodel.get("mlflow_version"),
        "model_uuid": mlmodel.get("model_uuid"),
    }
    signature, note = _convert_signature(mlmodel.get("signature"))
    if note:
        imported_from["signature_note"] = note
    example = _read_example(mlflow_dir, mlmodel, signature)
    return save_model_dir(
        model,
        target_dir,
        input_example=example,
        signature=signature,
        metadata={"imported_from": imported_from},
    )


def _read_mlmodel(mlflow_dir: Path) -> dict[str, Any]:
    path = mlflow_dir / MLMODEL_FILE
    if not path.is_file():
        raise InvalidInput(
            f"{mlflow_dir} has no {MLMODEL_FILE} file: not an MLflow model directory",
            field="path",
        )
    try:
        mlmodel = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}", field="path") from exc
    if not isinstance(mlmodel, dict):
        raise InvalidInput(f"{path} is not a YAML mapping", field="path")
    return mlmodel


def _model_file(mlflow_dir: Path, name: Any) -> Path:
    # The file name comes from the artifact; keep it inside the model directory.
    if not isinstance(name, str) or not name:
        raise InvalidInput("the MLflow flavor names no model file", field="path")
    path = (mlflow_dir / name).resolve()
    if not path.is_relative_to(mlflow_dir.resolve()) or not path.is_file():
        raise InvalidInput(f"model file {name} is missing from {mlflow_dir}", field="path")
    return path


def _unpickle(path: Path, *, allow_pickle: bool, what: str) -> Any:
    if not allow_pickle:
        raise pickle_refused(what)
    try:
        with path.open("rb") as stream:
            return pickle.load(stream)
    except (pickle.UnpicklingError, ImportError, AttributeError, EOFError) as exc:
        raise InvalidInput(f"cannot unpickle {path.name}: {exc}", field="model") from exc


def _load_lightgbm(mlflow_dir: Path, conf: dict[str, Any], *, allow_pickle: bool) -> Any:
    import lightgbm

    path = _model_file(mlflow_dir, conf.get("data"))
    model_class = conf.get("model_class", "lightgbm.basic.Booster")
    if model_class == "lightgbm.basic.Booster":
        try:
            return lightgbm.Booster(model_file=path)
        except lightgbm.basic.LightGBMError as exc:
            raise InvalidInput(
                f"{path.name} is not a LightGBM model: {exc}", field="model"
            ) from exc
    # MLflow versions before skops support wrote cloudpickle without saying so.
    fmt = conf.get("serialization_format") or "cloudpickle"
    if fmt == "skops":
        return load_skops(path)
    if fmt in _PICKLE_FORMATS:
        return _unpickle(path, allow_pickle=allow_pickle, what=f"this MLflow {model_class} ({fmt})")
    raise InvalidInput(f"unknown MLflow serialization_format {fmt!r}", field="path")


def _load_sklearn(mlflow_dir: Path, conf: dict[str, Any], *, allow_pickle: bool) -> Any:
    path = _model_file(mlflow_dir, conf.get("pickled_model"))
    fmt = conf.get("serialization_format") or "cloudpickle"
    if fmt == "skops":
        return load_skops(path)
    if fmt in _PICKLE_FORMATS:
        return _unpickle(path, allow_pickle=allow_pickle, what=f"this MLflow sklearn model ({fmt})")
    raise InvalidInput(f"unknown MLflow serialization_format {fmt!r}", field="path")


def _convert_signature(mlflow_signature: Any) -> tuple[dict[str, Any] | None, str | None]:
    """keel's form of an MLflow signature, or None and the reason it could not be converted."""
    if not isinstance(mlflow_signature, dict) or not mlflow_signature.get("inputs"):
        return None, None
    try:
        inputs = _convert_columns(json.loads(mlflow_signature["inputs"]), default="f")
        outputs = None
        if mlflow_signature.get("outputs"):
            outputs = _convert_columns(json.loads(mlflow_signature["outputs"]), default="output")
    except (TypeError, ValueError, KeyError) as exc:
        return None, f"MLflow signature not converted: {exc}"
    return {"inputs": inputs, "outputs": outputs}, None


def _convert_columns(specs: list[dict[str, Any]], *, default: str) -> list[dict[str, Any]]:
    columns: list[dict[str, Any]] = []
    for spec in specs:
        nullable = not spec.get("required", True)
        if spec["type"] == "tensor":
            dtype, shape = spec["tensor-spec"]["dtype"], spec["tensor-spec"]["shape"]
            kind = _TENSOR_TYPES.get(dtype)
            if kind is None or len(shape) > 2:
                raise ValueError(f"tensor {dtype} {shape} has no column form")
            if len(shape) == 2:
                width = shape[1]
                if width < 1:
                    raise ValueError(f"tensor shape {shape} has no fixed width")
                columns += [
                    {"name": f"f{k}", "type": kind, "nullable": False} for k in range(width)
                ]
                continue
            name = spec.get("name") or ("prediction" if default == "output" else default)
            columns.append({"name": name, "type": kind, "nullable": False})
            continue
        if spec["type"] not in COLUMN_TYPES:
            raise ValueError(f"column type {spec['type']!r} is not supported")
        name = spec.get("name") or f"{default}{len(columns)}"
        columns.append({"name": str(name), "type": spec["type"], "nullable": nullable})
    return columns


def _read_example(
    mlflow_dir: Path, mlmodel: dict[str, Any], signature: dict[str, Any] | None
) -> Any:
    info = mlmodel.get("saved_input_example_info")
    if not isinstance(info, dict):
        return None
    path = (mlflow_dir / str(info.get("artifact_path") or "input_example.json")).resolve()
    if not path.is_relative_to(mlflow_dir.resolve()) or not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}", field="input_example") from exc
    return example_from_json(_split_form(raw), signature)


def _split_form(raw: Any) -> dict[str, Any]:
    """MLflow's example encodings, as keel's ``{"columns": [...], "data": [...]}``."""
    if isinstance(raw, dict):
        for key in ("dataframe_split", "dataframe_records", "inputs", "instances"):
            if key in raw:
                return _split_form(raw[key])
        if "columns" in raw and "data" in raw:
            return {"columns": raw["columns"], "data": raw["data"]}
    if isinstance(raw, list) and raw and all(isinstance(row, dict) for row in raw):
        columns = list(dict.fromkeys(key for row in raw for key in row))
        return {"columns": columns, "data": [[row.get(c) for c in columns] for row in raw]}
    if isinstance(raw, list) and raw:
        array = np.asarray(raw, dtype=object)
        if array.ndim == 2:
            return {"columns": [f"f{k}" for k in range(array.shape[1])], "data": array.tolist()}
    raise InvalidInput("the MLflow input example has an unknown layout", field="input_example")
