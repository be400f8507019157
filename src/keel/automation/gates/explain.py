"""Explanation gates (R-CICD-05): feature-importance concentration and SHAP direction.

Attributions are SHAP values of the model's native estimator on a bounded holdout sample:
``shap.TreeExplainer`` (tree ensembles: LightGBM, XGBoost, scikit-learn forests) or
``shap.LinearExplainer`` (linear models), both in the model's raw output space (log-odds for
a classifier). A scikit-learn pipeline is explained at its last step on the transformed
rows, and each transformed column is credited back to the input column(s) it comes from:
the columns that change when one input column is shuffled (SHAP values are additive, so a
one-hot encoded category's SHAP value is the sum of its indicator columns').

When shap cannot explain the model (ONNX graphs, python functions, unsupported
estimators), importance is sklearn's permutation importance (ROC AUC drop) and the
direction is the slope of the partial dependence (mean score over a grid of the feature's
quantiles); the result says which method was used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.automation.gates.policy import ImportancePolicy, ShapDirectionPolicy
from keel.automation.gates.result import GateResult, cannot_compute, judged
from keel.errors import InvalidInput

__all__ = ["Attribution", "check_policy_features", "direction_gate", "importance_gate", "shap"]

_SEED = 0


@dataclass(frozen=True)
class Attribution:
    """Per-row SHAP values of the input columns (``values``: rows × features) on ``sample``,
    with the explainer used (``method``); ``None`` and ``why`` when shap cannot explain."""

    method: str | None
    features: list[str]
    sample: pd.DataFrame
    values: np.ndarray | None
    why: str = ""


def _sample(features: pd.DataFrame, rows: int) -> pd.DataFrame:
    if len(features) <= rows:
        return features.reset_index(drop=True)
    return features.sample(n=rows, random_state=_SEED).reset_index(drop=True)


def _native_input(model: Any, frame: pd.DataFrame) -> tuple[Any, Any]:
    """The native estimator and the rows as it receives them (a keel LoadedModel types the
    frame as the gateway does and puts the columns in the model's order)."""
    if hasattr(model, "native") and hasattr(model, "_prepare"):
        # the LoadedModel's own preparation, so SHAP sees exactly what predict_proba sees
        return model.native, model._prepare(model._signed(frame))
    return model, frame


def _explain_raw(estimator: Any, rows: Any) -> tuple[np.ndarray, str]:
    """SHAP values (rows × columns) of the positive class and the explainer's name."""
    import shap as shap_lib

    try:
        explainer: Any = shap_lib.TreeExplainer(estimator)
        name = "shap.TreeExplainer"
    except Exception:  # shap's InvalidModelError and friends: not a tree model
        # the whole sample as background (shap's default keeps 100 random rows)
        masker = shap_lib.maskers.Independent(rows, max_samples=len(rows))
        explainer = shap_lib.LinearExplainer(estimator, masker)
        name = "shap.LinearExplainer"
    with warnings.catch_warnings():
        # shap announces its LightGBM output format on every call; not the user's concern
        warnings.filterwarnings("ignore", message=".*TreeExplainer shap values output")
        values = explainer.shap_values(rows)
    if isinstance(values, list):  # older shap: one array per class
        values = values[-1]
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 3:  # rows × columns × classes: the positive (last) class
        array = array[:, :, -1]
    return array, name


def _dense(matrix: Any) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, np.float64)


def _credit(pre: Any, rows: pd.DataFrame, transformed: np.ndarray) -> np.ndarray:
    """Columns × inputs share matrix: which input column each transformed column comes from
    (found by shuffling one input at a time; a column fed by k inputs is split evenly)."""
    rng = np.random.default_rng(_SEED)
    changed = np.zeros((transformed.shape[1], rows.shape[1]), dtype=np.float64)
    for j, column in enumerate(rows.columns):
        shuffled = rows.copy()
        # iloc keeps the dtype (a category stays a category), set_axis the row labels
        shuffled[column] = rows[column].iloc[rng.permutation(len(rows))].set_axis(rows.index)
        moved = _dense(pre.transform(shuffled))
        changed[:, j] = np.any(~np.isclose(moved, transformed, equal_nan=True), axis=0)
    fed = changed.sum(axis=1, keepdims=True)
    shares: np.ndarray = np.divide(changed, fed, out=np.zeros_like(changed), where=fed > 0)
    return shares


def shap(model: Any, features: pd.DataFrame, rows: int) -> Attribution:
    """SHAP values of ``model``'s input columns on at most ``rows`` rows of ``features``."""
    sample = _sample(features, rows)
    names = [str(c) for c in sample.columns]
    try:
        estimator, prepared = _native_input(model, sample)
        steps = getattr(estimator, "steps", None)
        if steps and len(steps) > 1 and isinstance(prepared, pd.DataFrame):
            pre, last = estimator[:-1], estimator[-1]
            transformed = _dense(pre.transform(prepared))
            raw, method = _explain_raw(last, transformed)
            credit = _credit(pre, prepared, transformed)
            values = raw @ credit  # rows × prepared columns
            order = [str(c) for c in prepared.columns]
        else:
            values, method = _explain_raw(estimator, prepared)
            order = [str(c) for c in getattr(prepared, "columns", names)]
            if values.shape[1] != len(order):
                raise ValueError(f"{values.shape[1]} SHAP columns for {len(order)} inputs")
    except Exception as exc:  # shap cannot explain this model: the caller falls back
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        return Attribution(None, names, sample, None, why)
    # back to the holdout's names and order (a LightGBM model renames some columns)
    by_name = dict(zip(order, values.T, strict=True))
    if set(names) <= set(by_name):
        values = np.column_stack([by_name[n] for n in names])
    elif len(order) == len(names):
        values = np.asarray(values)
    else:
        why = f"the model takes columns {order[:10]} that are not the holdout's"
        return Attribution(None, names, sample, None, why)
    return Attribution(method + (" (pipeline, last step)" if steps else ""), names, sample, values)


class _Fitted:
    """A fitted model as sklearn's permutation_importance accepts it (it asks for ``fit``;
    nothing is refitted: the scorer only calls ``predict_proba``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def fit(self, *_: Any) -> _Fitted:
        return self


def _permutation(model: Any, sample: pd.DataFrame, y: np.ndarray, positive: Any) -> np.ndarray:
    from sklearn.inspection import permutation_importance

    from keel.automation.gates.checks import auc
    from keel.automation.gates.measure import positive_scores

    def score(estimator: _Fitted, X: pd.DataFrame, labels: np.ndarray) -> float:
        return auc(labels, positive_scores(estimator.model, X, positive))

    result = permutation_importance(
        _Fitted(model), sample, y, scoring=score, n_repeats=5, random_state=_SEED
    )
    return np.asarray(result.importances_mean, dtype=np.float64)


def check_policy_features(
    importance: ImportancePolicy | None,
    direction: ShapDirectionPolicy | None,
    features: pd.DataFrame,
) -> None:
    """InvalidInput naming ``shap_direction.expected.<name>`` for a declared feature the
    holdout lacks or that is not numeric (a direction needs ordered values)."""
    if direction is None or not direction.enabled:
        return
    columns = {str(c): c for c in features.columns}
    for name in direction.expected:
        field = f"shap_direction.expected.{name}"
        if name not in columns:
            raise InvalidInput(
                f"policy: {field}: {name!r} is not a feature of the holdout "
                f"(features: {sorted(columns)[:30]})",
                field=field,
            )
        dtype = features[columns[name]].dtype
        if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
            raise InvalidInput(
                f"policy: {field}: {name!r} is {dtype}, not numeric: a direction needs "
                "ordered values",
                field=field,
            )


def importance_gate(
    model: Any,
    features: pd.DataFrame,
    y: np.ndarray,
    policy: ImportancePolicy,
    positive: Any = 1,
) -> GateResult:
    """Share of the total importance held by the ``top`` features ≤ ``max_share``."""
    attribution = (
        shap(model, features, policy.sample_rows)
        if policy.method != "permutation"
        else Attribution(None, [str(c) for c in features.columns], _sample(features, 0), None)
    )
    if attribution.values is not None:
        importance = np.abs(attribution.values).mean(axis=0)
        method, note = f"mean |SHAP| ({attribution.method})", ""
    elif policy.method == "shap":
        return cannot_compute("importance", f"shap cannot explain the model: {attribution.why}")
    else:
        rows = min(policy.sample_rows, len(features))
        picked = np.random.default_rng(_SEED).permutation(len(features))[:rows]
        sample = features.iloc[np.sort(picked)].reset_index(drop=True)
        # a feature whose shuffling helps AUC has no importance, not a negative one
        importance = np.clip(_permutation(model, sample, y[np.sort(picked)], positive), 0, None)
        method = "permutation importance (ROC AUC drop)"
        note = f"shap not used: {attribution.why}" if attribution.why else ""
    names = attribution.features
    total = float(importance.sum())
    if not np.isfinite(total) or total <= 0:
        return cannot_compute("importance", f"total importance is {total:g} ({method})")
    shares = importance / total
    order = np.argsort(-shares, kind="stable")
    top = [(names[i], float(shares[i])) for i in order[: policy.top]]
    held = float(sum(share for _, share in top))
    ok = held <= policy.max_share
    listed = ", ".join(f"{name} {share:.1%}" for name, share in top)
    reason = (
        f"top {len(top)} feature(s) hold {held:.1%} of the importance "
        f"{'≤' if ok else '>'} {policy.max_share:.0%}: {listed} ({method})"
    )
    if policy.top >= len(names):  # the policy's k, not the model, decides this verdict
        reason += f"; the model has {len(names)} features, all in the top {policy.top}"
    return judged(
        "importance",
        ok,
        reason,
        held,
        policy.max_share,
        method=method,
        note=note,
        rows=min(policy.sample_rows, len(features)),
        top={name: share for name, share in top},
        shares={names[i]: float(shares[i]) for i in order},
    )


def _pd_slope(model: Any, sample: pd.DataFrame, column: Any, positive: Any) -> float:
    """Slope of the mean score over a grid of the column's 5–95 % quantiles."""
    from keel.automation.gates.measure import positive_scores

    values = pd.to_numeric(sample[column], errors="coerce").dropna().to_numpy(np.float64)
    if values.size == 0:
        return 0.0
    grid = np.unique(np.quantile(values, np.linspace(0.05, 0.95, 10)))
    if grid.size < 2:
        return 0.0
    means = []
    for value in grid:
        moved = sample.copy()
        moved[column] = np.full(len(sample), value, dtype=sample[column].dtype)
        means.append(float(positive_scores(model, moved, positive).mean()))
    return float(np.polyfit(grid, means, 1)[0])


def direction_gate(
    model: Any, features: pd.DataFrame, policy: ShapDirectionPolicy, positive: Any = 1
) -> GateResult:
    """Each declared feature's effect has the expected sign: the Pearson correlation of its
    values with its SHAP values (partial-dependence slope when shap cannot explain)."""
    check_policy_features(None, policy, features)
    attribution = shap(model, features, policy.sample_rows)
    columns = {str(c): c for c in features.columns}
    found: dict[str, dict[str, Any]] = {}
    for name, expected in policy.expected.items():
        raw = pd.to_numeric(attribution.sample[columns[name]], errors="coerce")
        x = raw.to_numpy(np.float64)
        if attribution.values is not None:
            phi = attribution.values[:, attribution.features.index(name)]
            keep = np.isfinite(x) & np.isfinite(phi)
            spread = keep.sum() > 2 and np.std(x[keep]) > 0 and np.std(phi[keep]) > 0
            r = float(np.corrcoef(x[keep], phi[keep])[0, 1]) if spread else 0.0
            slope = float(np.polyfit(x[keep], phi[keep], 1)[0]) if spread else 0.0
            item: dict[str, Any] = {"expected": expected, "correlation": r, "slope": slope}
        else:
            slope = _pd_slope(model, attribution.sample, columns[name], positive)
            r = slope
            item = {"expected": expected, "slope": slope}
        seen = "positive" if r > 0 else "negative" if r < 0 else "none"
        item["observed"] = seen
        found[name] = item
    if attribution.values is not None:
        method = f"corr(value, SHAP) ({attribution.method})"
    else:
        method = f"partial-dependence slope (shap not used: {attribution.why})"
    wrong = {n: i for n, i in found.items() if i["observed"] != i["expected"]}

    def shown(name: str, item: dict[str, Any]) -> str:
        number = item.get("correlation", item["slope"])
        key = "r" if "correlation" in item else "slope"
        return f"{name} {key} {number:+.3f} (expected {item['expected']})"

    if wrong:
        reason = f"{len(wrong)} feature(s) against the declared direction: " + ", ".join(
            shown(n, i) for n, i in wrong.items()
        )
    else:
        reason = "every declared direction holds: " + ", ".join(
            shown(n, i) for n, i in found.items()
        )
    return judged(
        "shap_direction",
        not wrong,
        f"{reason} ({method})",
        float(len(wrong)),
        0.0,
        method=method,
        rows=len(attribution.sample),
        features=found,
    )
