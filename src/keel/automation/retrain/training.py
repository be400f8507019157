"""Fit the user's train function on the executor, score it, and search hyperparameters
with Optuna, each trial a child run (R-TRK-08)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel.automation.job_models import PermanentFailure
from keel.automation.retrain.data import TS_COLUMN, WEIGHT_COLUMN, decay_weights, model_frame
from keel.automation.retrain.spec import ParamSpace, RetrainSpec, SearchSpec, load_train_function
from keel.errors import InvalidInput
from keel.executors import Executor, open_executor

__all__ = ["TrainFunctionFailed", "evaluate", "fit", "search", "train_params"]

#: The spec's ``params`` key under which ``train`` receives the decay weights.
WEIGHT_PARAM = "sample_weight"


def train_params(spec: RetrainSpec, train: pd.DataFrame, extra: dict[str, Any]) -> dict[str, Any]:
    """``params`` for ``train``: the spec's, a trial's, and ``sample_weight`` (a numpy array
    aligned with the frame's rows) when the spec has ``decay_per_day`` or the rows have
    weights (implicit labels, inverse propensity): their product."""
    params = {**spec.params, **extra}
    if spec.decay_per_day is not None and len(train):
        ts = train[TS_COLUMN].to_numpy()
        params[WEIGHT_PARAM] = decay_weights(ts, spec.decay_per_day, int(ts.max()))
    if WEIGHT_COLUMN in train.columns and len(train):
        rows = train[WEIGHT_COLUMN].to_numpy(dtype=float)
        params[WEIGHT_PARAM] = rows * params[WEIGHT_PARAM] if WEIGHT_PARAM in params else rows
    if spec.class_weight is not None and len(train):
        rows = class_sample_weights(train[spec.label], spec.class_weight)
        params[WEIGHT_PARAM] = rows * params[WEIGHT_PARAM] if WEIGHT_PARAM in params else rows
    return params


def class_sample_weights(labels: pd.Series, class_weight: str | dict[str, float]) -> Any:
    """Each row's class weight (R-TRN-22: class imbalance, e.g. 8 % churners): 'balanced'
    is sklearn's ``compute_sample_weight`` (n / (classes x count of the row's class)); a
    mapping names labels as text, as JSON keys are ("1": 3.0), and leaves others at 1.
    InvalidInput naming ``retrain.class_weight`` for a label the rows lack."""
    if not isinstance(class_weight, dict):
        from sklearn.utils.class_weight import compute_sample_weight

        return compute_sample_weight(class_weight, labels.to_numpy())
    text = labels.map(str)
    unknown = sorted(set(class_weight) - set(text.unique().tolist()))
    if unknown:
        field = "retrain.class_weight"
        raise InvalidInput(
            f"{field}: {unknown} are not labels of the rows "
            f"(labels: {sorted(text.unique().tolist())[:20]})",
            field=field,
        )
    return text.map(lambda label: class_weight.get(label, 1.0)).to_numpy(dtype=float)


#: ``_call``'s marker for "no warm start": the function is called with two arguments.
COLD = "cold"


def _call(path: str, frame: pd.DataFrame, params: dict[str, Any], champion: Any = COLD) -> Any:
    """Runs in the worker (this process or a pool's): load the function by path and call it
    (with ``champion=`` when warm-starting, R-TRN-26)."""
    function: Callable[..., Any] = load_train_function(path)
    try:
        if isinstance(champion, str) and champion == COLD:
            return function(frame, params)
        return function(frame, params, champion=champion)
    except Exception as exc:  # the user's code, not keel's: retrying runs it on the same rows
        raise TrainFunctionFailed(f"{path} raised {type(exc).__name__}: {exc}") from exc


class TrainFunctionFailed(PermanentFailure):
    """The user's train function raised: the job fails at once (one failed run, one
    decision) instead of retrying the same code on the same rows. The original exception
    is its cause, so the stored traceback shows it (from a pool's process too)."""


def fit(
    spec: RetrainSpec,
    train: pd.DataFrame,
    extra: dict[str, Any] | None = None,
    executor: Executor | None = None,
    champion: Any = COLD,
) -> Any:
    """The model ``train(frame, params)`` returns, run on ``executor`` (default: a new one
    of ``spec.executor``, else ``process``) within ``spec.fit_timeout_s``.

    Off ``inline`` the train function is imported by path where it runs, so it must be
    importable there; a crash of native code then fails the job, not the worker. The frame
    excludes the event-time column. ``champion`` (the loaded champion model, or None when
    there is none) is passed as ``champion=`` for a warm start; left at ``COLD``, ``train``
    gets two arguments.
    """
    params = train_params(spec, train, dict(extra or {}))
    frame = model_frame(train)
    timeout = spec.fit_timeout_s
    if executor is None:
        with open_executor(spec.executor or "process") as own:
            return own.run(_call, spec.train, frame, params, champion, timeout_s=timeout)
    return executor.run(_call, spec.train, frame, params, champion, timeout_s=timeout)


def evaluate(model: Any, part: pd.DataFrame, spec: RetrainSpec, prefix: str) -> dict[str, float]:
    """AUC, log loss and Brier score of ``model`` on ``part`` as ``<prefix>.<metric>``;
    empty when the part is empty or has one class (AUC is undefined then)."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    from keel.automation.gates.measure import positive_scores

    if len(part) == 0:
        return {}
    y = (part[spec.label].astype(str) == str(spec.positive)).to_numpy().astype(int)
    if y.min() == y.max():
        return {f"{prefix}.rows": float(len(part))}
    features = model_frame(part).drop(columns=[spec.label])
    scores = np.clip(positive_scores(model, features, spec.positive), 1e-7, 1 - 1e-7)
    return {
        f"{prefix}.auc": float(roc_auc_score(y, scores)),
        f"{prefix}.log_loss": float(log_loss(y, scores, labels=[0, 1])),
        f"{prefix}.brier": float(brier_score_loss(y, scores)),
        f"{prefix}.rows": float(len(part)),
    }


#: A finished trial: its number, params and validation metrics (kept as a child run).
Trial = dict[str, Any]


def search(
    spec: RetrainSpec,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    done: list[Trial],
    record: Callable[[Trial], None],
    executor: Executor | None = None,
) -> dict[str, Any]:
    """The best params of ``spec.search`` by validation metric.

    ``done`` are trials finished before a restart (R-TRN-25): they are replayed into the
    study (``add_trial``) instead of being trained again, so a resumed search only runs the
    remaining ones. ``record`` is called after each new trial (it writes the child run).
    ``executor`` runs every trial's fit (so a process backend starts one process).
    """
    import optuna

    assert spec.search is not None
    plan: SearchSpec = spec.search
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    higher = plan.metric == "auc"
    study = optuna.create_study(
        direction="maximize" if higher else "minimize",
        sampler=optuna.samplers.TPESampler(seed=plan.seed),
    )
    distributions = {name: _distribution(space) for name, space in plan.space.items()}
    for old in done:
        if old.get("value") is None:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=old["params"], distributions=distributions, value=old["value"]
            )
        )
    worst = -np.inf if higher else np.inf
    for number in range(len(done), plan.n_trials):
        trial = study.ask(distributions)
        params = dict(trial.params)
        model = fit(spec, train, params, executor)
        metrics = evaluate(model, validation, spec, "validation")
        value = metrics.get(f"validation.{plan.metric}")
        study.tell(trial, worst if value is None else value)
        finished: Trial = {"number": number, "params": params, "value": value, "metrics": metrics}
        record(finished)
        done.append(finished)
    scored = [t for t in done if t.get("value") is not None]
    if not scored:
        return dict(done[0]["params"]) if done else {}
    best = (
        max(scored, key=lambda t: t["value"]) if higher else min(scored, key=lambda t: t["value"])
    )
    return dict(best["params"])


def _distribution(space: ParamSpace) -> Any:
    import optuna.distributions as dist

    if space.type == "categorical":
        return dist.CategoricalDistribution(space.choices or [])
    assert space.low is not None and space.high is not None
    if space.type == "int":
        return dist.IntDistribution(int(space.low), int(space.high), log=space.log)
    return dist.FloatDistribution(space.low, space.high, log=space.log)
