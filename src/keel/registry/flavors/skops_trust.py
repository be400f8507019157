"""Which types and functions a skops file may name, and loading one safely.

A skops file is a tree of nodes, each naming a type or a function that loading imports and
builds or returns. skops trusts a small default set (scikit-learn estimators, numpy and
scipy ufuncs, numpy dtypes, builtin containers); keel adds an explicit list of **exact**
names on top of it (:data:`KEEL_TRUSTED_NAMES`) and refuses everything else. There are no
module prefixes: a prefix such as ``numpy.`` admits ``numpy.lib._npyio_impl.load`` (an alias
of ``numpy.load``), which unpickles a file, or a bound method such as
``numpy.ndarray.tofile``. Every name added here is a type or a pure computation that cannot
read or write files, import modules or evaluate text.

Some trusted types are safe only with sound contents, which :func:`check_model_contents`
checks in the loaded model before anything runs it:

* two hold raw node indices that scikit-learn follows without bounds checks
  (``sklearn.tree._tree.Tree`` and HistGradientBoosting's ``TreePredictor``; skops itself
  refuses them by default for that reason): a crafted file cannot make ``predict`` read
  outside their arrays or loop forever;
* ``make_column_selector`` (a ColumnTransformer choosing columns by dtype) may name dtypes
  by name only, and no regular expression: a crafted pattern could take exponential time
  on the column names of every request.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import InvalidInput

__all__ = [
    "KEEL_TRUSTED_NAMES",
    "check_model_contents",
    "is_trusted_type",
    "load_skops",
    "refuse_untrusted",
]

_TREE = "sklearn.tree._tree.Tree"
_TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
_COLUMN_SELECTOR = "sklearn.compose._column_transformer.make_column_selector"

# Exact names trusted on top of skops' defaults. Keep each entry a type (or a side-effect
# free computation) keel registers models with; never add a module prefix or a function
# that touches files, processes, imports or code.
KEEL_TRUSTED_NAMES: frozenset[str] = frozenset(
    {
        # containers and dtypes that fitted estimators hold
        "collections.OrderedDict",
        "numpy.dtype",
        # the gradient-boosting libraries' scikit-learn wrappers, which keel registers
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRanker",
        "lightgbm.sklearn.LGBMRegressor",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRanker",
        "xgboost.sklearn.XGBRegressor",
        # scikit-learn internals of common estimators (these three: check_model_contents)
        _TREE,
        _TREE_PREDICTOR,
        _COLUMN_SELECTOR,
        "sklearn._loss.loss.HalfTweedieLossIdentity",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        # pure functions estimators store as parameters (SelectKBest's score_func, ...)
        "numpy.mean",
        "numpy.median",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "sklearn.feature_selection._mutual_info.mutual_info_classif",
        "sklearn.feature_selection._mutual_info.mutual_info_regression",
    }
)


def is_trusted_type(name: str) -> bool:
    """Whether keel trusts ``name`` (a type or function a skops file names) beyond skops' own
    defaults: an exact member of :data:`KEEL_TRUSTED_NAMES`."""
    return name in KEEL_TRUSTED_NAMES


def load_skops(path: Path) -> Any:
    """Load a skops file trusting only skops' defaults plus :data:`KEEL_TRUSTED_NAMES`.

    Raises InvalidInput (field ``model``) naming every other type or function in the file,
    when the file is not a skops file, and when its contents fail
    :func:`check_model_contents` (a tree pointing outside its arrays, a selector's pattern).
    """
    import skops.io

    untrusted = refuse_untrusted(path)
    try:
        model = skops.io.load(path, trusted=sorted(untrusted))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{path.name} is not a valid skops file: {exc}", field="model") from exc
    check_model_contents(model, source=path.name)
    return model


def refuse_untrusted(path: Path, *, name: str | None = None, field: str = "model") -> list[str]:
    """The names in skops file ``path`` beyond skops' defaults, all of them trusted by keel;
    else InvalidInput (``field``) naming the others. Logging and registering a model check
    this too, so a model keel would refuse to load is refused then, not when served.
    ``name``: the file's name in messages (default: ``path``'s)."""
    import skops.io

    shown = name or path.name
    try:
        untrusted: list[str] = skops.io.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise InvalidInput(f"{shown} is not a valid skops file: {exc}", field=field) from exc
    refused = sorted(name for name in untrusted if not is_trusted_type(name))
    if refused:
        raise InvalidInput(
            f"{shown} names types or functions keel does not trust: {', '.join(refused)}. "
            "keel loads skops files holding scikit-learn estimators, numpy and scipy ufuncs, "
            "LightGBM and XGBoost models and a fixed list of exact names (see "
            "keel.registry.flavors.skops_trust.KEEL_TRUSTED_NAMES); nothing else.",
            field=field,
            untrusted_types=refused,
        )
    return untrusted


def check_model_contents(model: Any, *, source: str) -> None:
    """Raise InvalidInput if a decision tree inside ``model`` has out-of-range node links, or
    a column selector names a regular expression or dtypes other than by name.

    Walks the estimator's attributes (lists, tuples, dicts and nested objects) once each.
    """
    from sklearn.compose import make_column_selector
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    # Each entry carries the input width of the nearest enclosing estimator, which bounds
    # the feature index a HistGradientBoosting predictor may read.
    stack: list[tuple[Any, int | None]] = [(model, None)]
    while stack:
        item, width = stack.pop()
        if id(item) in seen or isinstance(item, str | bytes | int | float | np.ndarray):
            continue
        seen.add(id(item))
        if isinstance(item, Tree):
            _check_tree(item, source)
        elif isinstance(item, TreePredictor):
            _check_tree_predictor(item, width, source)
        elif isinstance(item, make_column_selector):
            _check_selector(item, source)
        elif isinstance(item, list | tuple | set):
            stack.extend((child, width) for child in item)
        elif isinstance(item, dict):
            stack.extend((child, width) for child in item.values())
        elif hasattr(item, "__dict__") and type(item).__module__.startswith("sklearn"):
            own = getattr(item, "n_features_in_", None)
            inner = own if isinstance(own, int | np.integer) else width
            bound = None if inner is None else int(inner)
            stack.extend((child, bound) for child in vars(item).values())


def _check_selector(selector: Any, source: str) -> None:
    if selector.pattern is not None:
        raise InvalidInput(
            f"{source} holds a column selector with the regular expression "
            f"{selector.pattern!r}: keel refuses patterns from model files (one can take "
            "exponential time on a request's column names); select columns by dtype or name",
            field="model",
        )
    for name in ("dtype_include", "dtype_exclude"):
        value = getattr(selector, name)
        names = value if isinstance(value, list | tuple) else [value]
        if value is not None and not all(isinstance(v, str) for v in names):
            raise InvalidInput(
                f"{source} holds a column selector whose {name} is not dtype names: {value!r}",
                field="model",
            )


def _bad_tree(source: str, what: str) -> InvalidInput:
    return InvalidInput(f"{source} holds a corrupt decision tree: {what}", field="model")


def _check_links(left: np.ndarray, right: np.ndarray, leaf: np.ndarray, source: str) -> None:
    """Inner nodes point forward (children are built after their parent) and inside the array."""
    count = len(left)
    index = np.arange(count)
    inner = ~leaf
    for name, child in (("left", left), ("right", right)):
        target = child[inner]
        if np.any(target <= index[inner]) or np.any(target >= count):
            raise _bad_tree(source, f"a {name} child index is out of range")


def _check_tree(tree: Any, source: str) -> None:
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    feature = np.asarray(tree.feature, dtype=np.int64)
    if not (len(left) == len(right) == len(feature) == tree.node_count) or tree.node_count < 1:
        raise _bad_tree(source, "its node arrays disagree on the node count")
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise _bad_tree(source, "a node has exactly one child")
    _check_links(left, right, leaf, source)
    if np.any((feature[~leaf] < 0) | (feature[~leaf] >= tree.n_features)):
        raise _bad_tree(source, "a split names a feature that does not exist")


def _check_tree_predictor(predictor: Any, width: int | None, source: str) -> None:
    nodes = predictor.nodes
    if len(nodes) < 1:
        raise _bad_tree(source, "it has no nodes")
    leaf = nodes["is_leaf"].astype(bool)
    _check_links(nodes["left"].astype(np.int64), nodes["right"].astype(np.int64), leaf, source)
    categorical = nodes["is_categorical"].astype(bool) & ~leaf
    bitsets = np.asarray(predictor.raw_left_cat_bitsets)
    if np.any(nodes["bitset_idx"][categorical] >= len(bitsets)):
        raise _bad_tree(source, "a categorical split points outside its bitsets")
    features = nodes["feature_idx"][~leaf].astype(np.int64)
    if width is None:
        raise _bad_tree(source, "its estimator does not say how many features it reads")
    if np.any((features < 0) | (features >= width)):
        raise _bad_tree(source, "a split names a feature that does not exist")
