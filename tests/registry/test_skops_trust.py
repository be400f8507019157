"""A crafted model file must not run code: skops names on an exact allow-list, pyfunc classes
on the operator's list, and decision trees bounds-checked before they predict.

The exploit of the outside review: a skops Pipeline of FunctionTransformers whose last
function is ``numpy.lib._npyio_impl.load`` (the function ``numpy.load`` is) with
``allow_pickle=True``, pointed at a pickle uploaded as a run artifact. Loading the model and
calling predict unpickled it inside the server.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.client import Client
from keel.config import Settings
from keel.errors import InvalidInput
from keel.registry.flavors.skops_trust import KEEL_TRUSTED_NAMES, is_trusted_type, load_skops
from keel.registry.packaging import load_model_dir, save_model_dir
from keel.services import open_services


class _Touch:
    """Unpickling this creates ``path``: the stand-in for running any code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _rename_functions(data: bytes, renames: dict[str, str]) -> bytes:
    """Rewrite a skops file's schema so its function nodes name other functions."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("__loader__") == "FunctionNode":
                name = f"{node['__module__']}.{node['__class__']}"
                module, _, function = renames.get(name, name).rpartition(".")
                node["__module__"], node["__class__"] = module, function
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            if item.filename == "schema.json":
                target.writestr(item, json.dumps(schema))
            else:
                target.writestr(item, source.read(item))
    return out.getvalue()


def _exploit_model_dir(directory: Path, pickle_path: Path) -> Path:
    """The review's exploit as a keel model directory (written by hand, as an attacker would)."""
    X = np.array([[0.0, 1.0], [1.0, 0.0]] * 5)
    y = np.array([0, 1] * 5)
    pipeline = Pipeline(
        [
            ("flat", FunctionTransformer(np.ravel)),
            ("pick", FunctionTransformer(np.max)),
            ("load", FunctionTransformer(np.load, kw_args={"allow_pickle": True})),
            ("model", LogisticRegression()),
        ]
    )
    pipeline.steps[-1][1].fit(X, y)
    data = skops.io.dumps(pipeline)
    data = _rename_functions(
        data,
        {
            "numpy.ravel": "numpy.ravel",
            "numpy.max": "builtins.max",
            "numpy.load": "numpy.lib._npyio_impl.load",
        },
    )
    directory.mkdir(parents=True)
    (directory / "model.skops").write_bytes(data)
    meta = {
        "format_version": 1,
        "flavor": "sklearn",
        "flavor_meta": {"file": "model.skops", "is_classifier": True, "classes": [0, 1]},
        "signature": {"inputs": [{"name": "path", "type": "string"}], "outputs": None},
        "input_example": None,
    }
    (directory / "keel_model.json").write_text(json.dumps(meta))
    pickle_path.write_bytes(pickle.dumps(_Touch(pickle_path.with_suffix(".pwned"))))
    return directory


def test_the_reviews_exploit_is_refused_naming_the_function(tmp_path: Path) -> None:
    payload = tmp_path / "payload.pkl"
    model_dir = _exploit_model_dir(tmp_path / "model", payload)

    with pytest.raises(InvalidInput) as err:
        load_model_dir(model_dir)

    assert err.value.field == "model"
    refused = err.value.detail["untrusted_types"]
    assert "numpy.lib._npyio_impl.load" in refused and "builtins.max" in refused
    assert not payload.with_suffix(".pwned").exists()


def test_the_exploit_is_refused_over_http_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Editor uploads the crafted model and a pickle: registering it is refused; one
    registered anyway (by a keel before that check) is refused at predict, running nothing."""
    settings = Settings(home=tmp_path / "keel")
    services = open_services(settings)
    try:
        with serve_in_thread(create_app(services=services)) as url:
            client = Client(url)
            payload = tmp_path / "payload.pkl"
            model_dir = _exploit_model_dir(tmp_path / "model", payload)
            with client.start_run("attack", capture_env=False) as run:
                run.log_artifact(payload, "payload.pkl")
                run.log_artifact(model_dir, "model")
            with pytest.raises(InvalidInput, match="numpy.lib._npyio_impl.load") as refused:
                client.register_model("innocent", run.id, "model")
            assert refused.value.field == "artifact_path"
            # a registry written before registration checked what loads
            from keel.registry.flavors import sklearn as flavor

            monkeypatch.setattr(flavor, "refuse_unservable_sklearn", lambda *args: None)
            client.register_model("innocent", run.id, "model")

            import httpx

            answer = httpx.post(
                f"{url}/v1/models/innocent/1/predict",
                json={"instances": [{"path": str(payload)}]},
                timeout=30,
            )
            assert answer.status_code in (422, 503), answer.text
            assert "numpy.lib._npyio_impl.load" in answer.text
            with pytest.raises(InvalidInput, match="numpy.lib._npyio_impl.load"):
                client.load_model("models:/innocent/1")
            assert not payload.with_suffix(".pwned").exists()
    finally:
        services.close()


DANGEROUS = [
    "numpy.load",
    "numpy.lib._npyio_impl.load",
    "numpy.lib.npyio.load",
    "numpy.fromfile",
    "numpy.ndarray.tofile",
    "numpy.ndarray.dump",
    "numpy.save",
    "numpy.loadtxt",
    "numpy.memmap",
    "numpy.lib.format.read_array",
    "numpy.ctypeslib.load_library",
    "builtins.eval",
    "builtins.exec",
    "builtins.open",
    "builtins.max",
    "builtins.getattr",
    "builtins.__import__",
    "os.system",
    "posix.system",
    "subprocess.Popen",
    "pickle.loads",
    "_pickle.loads",
    "importlib.import_module",
    "scipy.io.loadmat",
    "scipy.sparse.load_npz",
    "sklearn.utils._testing.assert_run_python_script_without_output",
    "sklearn.datasets.fetch_openml",
    "joblib.load",
    "lightgbm.basic.Booster.save_model",
    "lightgbm.sklearn.LGBMClassifier.booster_",
    "xgboost.core.Booster.save_model",
    "collections.OrderedDict.fromkeys",
    "sklearn.tree._tree.Tree.__setstate__",
    "numpy.dtype.__new__",
]


@pytest.mark.parametrize("name", DANGEROUS)
def test_dangerous_names_are_not_trusted(name: str) -> None:
    assert not is_trusted_type(name)


_segment = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


@settings(max_examples=400, deadline=None)
@given(
    root=st.sampled_from(
        ["numpy", "builtins", "sklearn", "scipy", "lightgbm", "xgboost", "collections", "os"]
    ),
    rest=st.lists(_segment, min_size=1, max_size=4),
)
def test_fuzzed_names_are_trusted_only_when_listed_exactly(root: str, rest: list[str]) -> None:
    """No prefix is trusted: a name is trusted iff it is an exact member of the list."""
    name = ".".join([root, *rest])
    assert is_trusted_type(name) == (name in KEEL_TRUSTED_NAMES)


@pytest.mark.parametrize("trusted_name", sorted(KEEL_TRUSTED_NAMES))
def test_no_listed_name_reaches_files_or_code(trusted_name: str) -> None:
    """Every listed name resolves to a class or a side-effect-free numeric function."""
    module, _, attr = trusted_name.rpartition(".")
    pytest.importorskip(module.split(".")[0])
    found = getattr(__import__(module, fromlist=[attr]), attr)
    assert isinstance(found, type) or getattr(found, "__module__", "").startswith(
        ("numpy", "sklearn.feature_selection")
    )
    for word in ("load", "save", "open", "file", "exec", "eval", "import", "system"):
        assert word not in attr.lower()


def _fit_frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=list("abcd"))
    y = (X["a"] + X["b"] > 0).astype(int).to_numpy()
    return X, y


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=3, random_state=0),
        HistGradientBoostingClassifier(max_iter=3),
    ],
)
def test_trees_load_when_sound(tmp_path: Path, estimator: Any) -> None:
    X, y = _fit_frame()
    estimator.fit(X, y)
    save_model_dir(estimator, tmp_path / "m")
    loaded = load_model_dir(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), estimator.predict(X))


def test_a_tree_pointing_outside_its_nodes_is_refused(tmp_path: Path) -> None:
    X, y = _fit_frame()
    forest = RandomForestClassifier(n_estimators=1, random_state=0).fit(X, y)
    tree = forest.estimators_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["left_child"][0] = 10**6  # would read far outside the node array
    tree.__setstate__(state)
    path = tmp_path / "forest.skops"
    skops.io.dump(forest, path)

    with pytest.raises(InvalidInput, match="corrupt decision tree") as err:
        load_skops(path)
    assert err.value.field == "model"


def test_a_tree_that_loops_back_is_refused(tmp_path: Path) -> None:
    X, y = _fit_frame()
    forest = RandomForestClassifier(n_estimators=1, random_state=0).fit(X, y)
    tree = forest.estimators_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["right_child"][0] = 0  # predict would loop forever
    tree.__setstate__(state)
    path = tmp_path / "forest.skops"
    skops.io.dump(forest, path)

    with pytest.raises(InvalidInput, match="corrupt decision tree"):
        load_skops(path)


def test_a_histogram_tree_reading_a_missing_feature_is_refused(tmp_path: Path) -> None:
    X, y = _fit_frame()
    model = HistGradientBoostingClassifier(max_iter=2).fit(X, y)
    predictor = model._predictors[0][0]
    inner = np.flatnonzero(predictor.nodes["is_leaf"] == 0)[0]
    predictor.nodes["feature_idx"][inner] = 50
    path = tmp_path / "hgb.skops"
    skops.io.dump(model, path)

    with pytest.raises(InvalidInput, match="feature that does not exist"):
        load_skops(path)


def test_pyfunc_class_from_keel_model_json_is_not_imported(tmp_path: Path) -> None:
    """``"serialization": "custom"`` with any installed class is refused before importing."""
    (tmp_path / "keel_model.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "flavor": "pyfunc",
                "flavor_meta": {"class": "antigravity:X", "serialization": "custom"},
            }
        )
    )
    import sys

    sys.modules.pop("antigravity", None)
    with pytest.raises(InvalidInput, match="KEEL_TRUSTED_MODEL_CLASSES") as err:
        load_model_dir(tmp_path)
    assert err.value.field == "class"
    assert "antigravity" not in sys.modules
