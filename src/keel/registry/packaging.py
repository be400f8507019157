"""A keel model directory: the flavor's files plus ``keel_model.json`` describing them.

``keel_model.json``::

    {"format_version": 1, "flavor": "sklearn", "flavor_meta": {...},
     "signature": {...} | null, "input_example": {"columns": [...], "data": [...]} | null,
     "python": "3.11.9", "created_at_ms": 1700000000000}
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput
from keel.registry.flavors import LoadedModel, flavor_for, get_flavor
from keel.registry.signature import check_signature, example_to_json, infer_signature, probe_nan

__all__ = [
    "FORMAT_VERSION",
    "MODEL_META_FILE",
    "load_model_dir",
    "read_model_meta",
    "save_model_dir",
]

MODEL_META_FILE = "keel_model.json"
FORMAT_VERSION = 1
_RESERVED_KEYS = frozenset(
    {
        "format_version",
        "flavor",
        "flavor_meta",
        "signature",
        "input_example",
        "python",
        "created_at_ms",
    }
)


def save_model_dir(
    model: Any,
    directory: Path,
    *,
    flavor: str | None = None,
    input_example: Any = None,
    signature: dict[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` into ``directory`` (created; must be empty) and return its metadata.

    ``flavor`` defaults to the first flavor that handles the model. Without ``signature``
    one is inferred from ``input_example`` (and the model is tried on NaN in its float
    columns, see :func:`keel.registry.signature.probe_nan`). ``metadata`` adds top-level keys to
    ``keel_model.json`` (e.g. ``imported_from``) and may not override the standard ones.
    """
    chosen = flavor_for(model) if flavor is None else get_flavor(flavor)
    if not chosen.handles(model):
        raise InvalidInput(
            f"flavor {chosen.name!r} cannot save a {type(model).__name__}", field="flavor"
        )
    clash = sorted(_RESERVED_KEYS.intersection(metadata or {}))
    if clash:
        raise InvalidInput(f"metadata may not set {clash}", field="metadata")
    if signature is not None:
        signature = check_signature(signature)
    elif input_example is not None:
        signature = infer_signature(input_example)
        # which float columns the model takes NaN in (serving refuses NaN where it does not)
        signature = probe_nan(signature, input_example, getattr(model, "predict", None))
    example = None if input_example is None else example_to_json(input_example)

    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidInput(f"{directory} exists and is not an empty directory", field="path")
    directory.mkdir(parents=True, exist_ok=True)
    try:
        flavor_meta = chosen.save(model, directory)
    except BaseException:
        # Leave no half-written model behind: the directory was empty before.
        for path in directory.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        raise
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "flavor": chosen.name,
        "flavor_meta": flavor_meta,
        "signature": signature,
        "input_example": example,
        "python": platform.python_version(),
        "created_at_ms": int(time.time() * 1000),
        **dict(metadata or {}),
    }
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False)
    (directory / MODEL_META_FILE).write_text(text + "\n", encoding="utf-8")
    return meta


def read_model_meta(directory: Path) -> dict[str, Any]:
    """Read ``keel_model.json``; raises InvalidInput naming the file if it is missing or bad."""
    path = Path(directory) / MODEL_META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(
            f"{path} not found: not a keel model directory", field="path", file=MODEL_META_FILE
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid JSON: {exc}", field="path") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("flavor"), str):
        raise InvalidInput(f"{path} does not name a flavor", field="path")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"{path} has format_version {meta.get('format_version')!r}; "
            f"this keel reads version {FORMAT_VERSION}",
            field="path",
        )
    if not isinstance(meta.get("flavor_meta"), dict):
        raise InvalidInput(f"{path} has no flavor_meta object", field="path")
    return meta


def load_model_dir(
    directory: Path, *, allow_pickle: bool = False, trusted_classes: Collection[str] = ()
) -> LoadedModel:
    """Load the model in ``directory``, with ``.signature`` and ``.metadata`` attached.

    ``allow_pickle`` (``Settings.allow_pickle``) permits flavors stored as pickle.
    ``trusted_classes`` (``Settings.trusted_model_class_names``) lists the exact
    ``module:QualName`` classes whose self-stored python-function models may be imported.
    An ONNX graph does not know column names, so it takes the signature's column order.
    """
    directory = Path(directory)
    meta = read_model_meta(directory)
    flavor = get_flavor(meta["flavor"])
    loaded = flavor.load(
        directory,
        meta["flavor_meta"],
        allow_pickle=allow_pickle,
        trusted_classes=trusted_classes,
    )
    signature = meta.get("signature")
    if signature is not None:
        signature = check_signature(signature)
        if loaded.feature_names is None and meta["flavor"] == "onnx":
            loaded.feature_names = [column["name"] for column in signature["inputs"]]
    loaded.signature = signature
    loaded.metadata = meta
    return loaded
