"""Edge export: a registered model version as one self-contained ONNX file, parity-checked.

Converters: scikit-learn estimators and pipelines through skl2onnx; LightGBM and XGBoost
boosters through onnxmltools; ONNX models are copied. The file takes one input per
signature column, named after it (``[N, 1]`` float tensors for numbers and booleans,
string tensors for text and categories), like keel's ONNX flavor expects, so the file can
be registered back and served. For LightGBM models trained on pandas categories, the
category → code mapping LightGBM applies is built into the graph (an ``ai.onnx.ml``
``LabelEncoder`` per column; an unseen category becomes NaN, as in LightGBM). The model
signature, classes, and the keel model and version are written to ``metadata_props``
(``keel.signature``, ``keel.classes``, ``keel.model``, ``keel.version``, ...). LightGBM and
XGBoost graphs output the class index as label; ``keel.classes`` maps it to the class.

Parity: the exported graph and the original model score the stored input example plus up
to ``samples`` rows of training-like data (the version's training dataset when the caller
passes it, else rows drawn around the example). It passes when

* classifiers: max |Δ probability| ≤ tolerance, and every label differs only on rows
  whose two best original probabilities are within 2 × tolerance (a tie at fp32);
* regressors: max |Δ| / max(1, |original|) ≤ tolerance.

Default tolerance: 1e-4 for fp32, 0.1 for int8 (dynamic quantization of MatMul / Gemm
weights moves probabilities by a few hundredths). The file is only written when parity
passes; otherwise :class:`~keel.errors.InvalidInput` (field ``parity``) carries the
measured difference.

int8 uses ``onnxruntime.quantization.quantize_dynamic``. It quantizes MatMul / Gemm /
Conv weights only: tree ensembles and linear models are single ``ai.onnx.ml`` operators
with nothing it can quantize, and the result then says so and stays fp32.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.registry.flavors import LoadedModel
from keel.registry.packaging import load_model_dir
from keel.registry.signature import example_from_json, validate_frame
from keel.serving._onnx_convert import (
    NUMERIC,
    TEXT,
    convert,
    quantize_int8,
    set_props,
    with_metadata,
)

__all__ = ["ExportResult", "LatencyReport", "ParityReport", "TOLERANCES", "export_onnx"]

TOLERANCES = {"fp32": 1e-4, "int8": 0.1}


@dataclass(frozen=True)
class ParityReport:
    """How closely the ONNX graph reproduces the original model."""

    rows: int
    metric: str  # "probabilities" or "predictions"
    max_abs_diff: float
    label_mismatches: int
    tolerance: float
    passed: bool


@dataclass(frozen=True)
class LatencyReport:
    """Median wall time of one predict call, in milliseconds (original model vs ONNX Runtime)."""

    original_1_row_ms: float
    onnx_1_row_ms: float
    original_1000_rows_ms: float
    onnx_1000_rows_ms: float
    # session.run alone on ready tensors: what an edge runtime that builds its own feeds pays
    onnx_run_1_row_ms: float
    onnx_run_1000_rows_ms: float


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and measured."""

    path: str
    model: str
    version: int
    flavor: str
    converter: str
    precision: str
    quantization_note: str | None
    size_bytes: int
    inputs: list[str]
    parity: ParityReport
    latency: LatencyReport | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)


def export_onnx(
    model_dir: Path,
    output: Path,
    *,
    model: str,
    version: int,
    quantize: str | None = None,
    tolerance: float | None = None,
    data: pd.DataFrame | None = None,
    samples: int = 1000,
    seed: int = 0,
    allow_pickle: bool = False,
    trusted_classes: Collection[str] = (),
    measure_latency: bool = True,
) -> ExportResult:
    """Convert the model in ``model_dir`` (a registry version) to ONNX at ``output``.

    ``data``: training-like rows (extra columns ignored) for the parity check. Raises
    InvalidInput: ``flavor`` (cannot be converted), ``model`` (the converter failed),
    ``signature`` (missing or unsupported column types), ``quantize``, ``tolerance``,
    ``parity`` (outputs differ beyond the tolerance; nothing is written).
    """
    if quantize not in (None, "int8"):
        raise InvalidInput(f"unknown quantization {quantize!r}; use int8", field="quantize")
    if tolerance is not None and not (tolerance >= 0 and math.isfinite(tolerance)):
        raise InvalidInput("tolerance must be a finite number >= 0", field="tolerance")
    if not 1 <= samples <= 100_000:
        raise InvalidInput("samples must be in 1..100000", field="samples")
    loaded = load_model_dir(
        Path(model_dir), allow_pickle=allow_pickle, trusted_classes=trusted_classes
    )
    signature = _signature(loaded)
    frame = _parity_frame(loaded, signature, data, samples, seed)
    proto, converter = convert(loaded, signature, Path(model_dir))
    proto = with_metadata(proto, loaded, signature, model=model, version=version)

    import onnx

    payload = proto.SerializeToString()
    precision, note = "fp32", None
    if quantize == "int8":
        payload, note = quantize_int8(payload)
        precision = "fp32" if note else "int8"
    limit = TOLERANCES[precision] if tolerance is None else tolerance
    exported = _session_model(payload, loaded, signature)
    parity = _parity(loaded, exported, frame, limit)
    if not parity.passed:
        raise InvalidInput(
            f"ONNX output differs from the original model: max |Δ {parity.metric}| = "
            f"{parity.max_abs_diff:.3g} (tolerance {limit:g}), {parity.label_mismatches} "
            f"label(s) differ on {parity.rows} rows; nothing was written",
            field="parity",
            **asdict(parity),
        )
    final = onnx.load_from_string(payload)
    set_props(final, {"keel.precision": precision, "keel.parity": json.dumps(asdict(parity))})
    _write_atomically(final.SerializeToString(), Path(output))
    latency = _latency(loaded, exported, frame, seed) if measure_latency else None
    return ExportResult(
        path=str(output),
        model=model,
        version=version,
        flavor=loaded.flavor,
        converter=converter,
        precision=precision,
        quantization_note=note,
        size_bytes=Path(output).stat().st_size,
        inputs=[c["name"] for c in signature["inputs"]],
        parity=parity,
        latency=latency,
    )


# ---- inputs -------------------------------------------------------------------------------
def _signature(loaded: LoadedModel) -> dict[str, Any]:
    signature = loaded.signature
    if signature is None:
        raise InvalidInput(
            "the version has no signature; ONNX inputs are named and typed from it "
            "(log the model with an input_example)",
            field="signature",
        )
    for column in signature["inputs"]:
        if column["type"] not in NUMERIC | TEXT:
            raise InvalidInput(
                f"column {column['name']!r} has type {column['type']}; ONNX export takes "
                "numeric, boolean, string and category columns",
                field="signature",
                column=column["name"],
            )
    return signature


def _parity_frame(
    loaded: LoadedModel,
    signature: dict[str, Any],
    data: pd.DataFrame | None,
    samples: int,
    seed: int,
) -> pd.DataFrame:
    names = [c["name"] for c in signature["inputs"]]
    parts = []
    example = loaded.metadata.get("input_example")
    if example is not None:
        parts.append(example_from_json(example, signature))
    rng = np.random.default_rng(seed)
    if data is not None and set(names) <= {str(c) for c in data.columns}:
        picked = rng.choice(len(data), size=min(samples, len(data)), replace=False)
        parts.append(data.iloc[np.sort(picked)][names].reset_index(drop=True))
    elif parts:
        parts.append(_around(parts[0], signature, samples, rng))
    if not parts:
        raise InvalidInput(
            "no rows for the parity check: the version has no input example and no data was given",
            field="data",
        )
    frames = [validate_frame(p[names], signature) for p in parts]
    combined = pd.concat(frames, ignore_index=True)
    for column in signature["inputs"]:
        if column["type"] == "category":
            combined[column["name"]] = combined[column["name"]].astype("category")
    return combined


def _around(example: pd.DataFrame, signature: dict[str, Any], n: int, rng: Any) -> pd.DataFrame:
    """Rows drawn around the example: numbers spread about its values, categories from it."""
    columns: dict[str, Any] = {}
    for spec in signature["inputs"]:
        values = example[spec["name"]].dropna()
        if spec["type"] in TEXT:
            pool = values.astype(str).unique() if len(values) else np.array([""])
            columns[spec["name"]] = rng.choice(pool, size=n)
        elif spec["type"] == "boolean":
            columns[spec["name"]] = rng.random(n) < 0.5
        else:
            numbers = values.astype("float64").to_numpy() if len(values) else np.zeros(1)
            # Spread like the example itself, so the rows stay in the model's input range.
            spread = float(numbers.std()) or abs(float(numbers.mean())) * 0.1 or 1.0
            drawn = rng.choice(numbers, size=n) + rng.normal(0, spread, size=n)
            if spec["type"] in ("long", "integer"):
                drawn = np.round(drawn).astype("int64")
            columns[spec["name"]] = drawn
    return pd.DataFrame(columns)


# ---- parity and latency -----------------------------------------------------------------------
def _session_model(payload: bytes, loaded: LoadedModel, signature: dict[str, Any]) -> LoadedModel:
    import onnxruntime

    from keel.registry.flavors.onnx import OnnxModel

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: shape notes would go to stderr per call
    # One thread, no spinning: per-request latency on a shared CPU, not a benchmark of
    # how many cores ONNX Runtime can grab.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    exported = OnnxModel(session, loaded.classes)
    exported.feature_names = [c["name"] for c in signature["inputs"]]
    return exported


def _onnx_input(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as str with '' for missing (a string tensor has no null)."""
    converted = {}
    for name in frame.columns:
        column = frame[name]
        if (
            isinstance(column.dtype, pd.CategoricalDtype)
            or not pd.api.types.is_numeric_dtype(column.dtype)
            and not pd.api.types.is_bool_dtype(column.dtype)
        ):
            column = column.astype(object).where(column.notna(), "").astype(str).astype(object)
        converted[name] = column
    return pd.DataFrame(converted)


def _outputs(model: LoadedModel, frame: pd.DataFrame, onnx_side: bool) -> tuple[Any, Any]:
    data = _onnx_input(frame) if onnx_side else frame
    labels = np.asarray(model.predict(data))
    proba = np.asarray(model.predict_proba(data)) if model.classes is not None else None
    classes = model.classes
    if onnx_side and classes and labels.dtype.kind in "iu" and classes != list(range(len(classes))):
        # Booster graphs (LightGBM, XGBoost) output the class index; keel.classes maps it.
        labels = np.asarray(classes)[labels]
    return labels, proba


def _parity(
    original: LoadedModel, exported: LoadedModel, frame: pd.DataFrame, tolerance: float
) -> ParityReport:
    labels, proba = _outputs(original, frame, onnx_side=False)
    got_labels, got_proba = _outputs(exported, frame, onnx_side=True)
    if proba is not None and got_proba is not None:
        diff = float(np.max(np.abs(proba.astype(float) - got_proba.astype(float))))
        top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.zeros((len(proba), 2))
        decided = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
        wrong = np.asarray(labels).astype(str) != np.asarray(got_labels).astype(str)
        mismatches = int(np.sum(wrong & decided))
        passed = diff <= tolerance and mismatches == 0
        metric = "probabilities"
    else:
        want = labels.astype(float).reshape(len(frame), -1)
        got = got_labels.astype(float).reshape(len(frame), -1)
        diff = float(np.max(np.abs(want - got) / np.maximum(1.0, np.abs(want))))
        mismatches, passed, metric = 0, diff <= tolerance, "predictions"
    return ParityReport(
        rows=len(frame),
        metric=metric,
        max_abs_diff=diff,
        label_mismatches=mismatches,
        tolerance=tolerance,
        passed=passed and math.isfinite(diff),
    )


def _median_ms(call: Callable[[], Any], repeats: int, budget_s: float) -> float:
    call()  # warm-up
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < deadline):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _latency(
    original: LoadedModel, exported: LoadedModel, frame: pd.DataFrame, seed: int
) -> LatencyReport:
    rng = np.random.default_rng(seed)
    one = frame.iloc[:1]
    many = frame.iloc[rng.choice(len(frame), size=1000, replace=True)].reset_index(drop=True)
    one_onnx, many_onnx = _onnx_input(one), _onnx_input(many)

    def run(model: LoadedModel, data: pd.DataFrame) -> Callable[[], Any]:
        method = model.predict_proba if model.classes is not None else model.predict
        return lambda: method(data)

    session = exported.native

    def run_only(data: pd.DataFrame) -> Callable[[], Any]:
        tensors = {
            spec.name: _tensor(data[spec.name] if spec.name in data else data, spec)
            for spec in session.get_inputs()
        }
        return lambda: session.run(None, tensors)

    return LatencyReport(
        original_1_row_ms=_median_ms(run(original, one), 100, 0.3),
        onnx_1_row_ms=_median_ms(run(exported, one_onnx), 100, 0.3),
        original_1000_rows_ms=_median_ms(run(original, many), 10, 0.5),
        onnx_1000_rows_ms=_median_ms(run(exported, many_onnx), 10, 0.5),
        onnx_run_1_row_ms=_median_ms(run_only(one_onnx), 100, 0.3),
        onnx_run_1000_rows_ms=_median_ms(run_only(many_onnx), 10, 0.5),
    )


def _tensor(values: pd.Series | pd.DataFrame, spec: Any) -> np.ndarray:
    """One graph input from a column ([N, 1] graphs) or the whole frame (one [N, k] input)."""
    if spec.type == "tensor(string)":
        array = np.asarray(values.to_numpy(), dtype=object)
    else:
        kind = np.float64 if spec.type == "tensor(double)" else np.float32
        array = np.asarray(values.to_numpy(), dtype=kind)
    shape = spec.shape or []
    return array.reshape(-1, 1) if array.ndim == 1 and len(shape) == 2 else array


def _write_atomically(payload: bytes, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
