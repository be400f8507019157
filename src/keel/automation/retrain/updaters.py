"""How an incremental update changes a model (R-TRN-09): ``partial_fit`` on the model, or
on a pipeline's last step (the preprocessing stays as fitted), or the user's
``update(model, frame, params) -> model`` by import path; and the check, when a spec is
applied, that the champion can be updated at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from keel.automation.retrain import promotion
from keel.automation.retrain.spec import JobArgs, load_train_function
from keel.errors import InvalidInput

__all__ = ["apply_update", "check_updatable", "partial_fit", "updatable"]


def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def updatable(model: Any) -> bool:
    """Whether keel can update ``model`` itself: it has ``partial_fit``, or it is a
    pipeline whose last step has (the earlier steps then stay as fitted)."""
    return callable(getattr(_final_step(model), "partial_fit", None))


def partial_fit(model: Any, features: pd.DataFrame, labels: pd.Series) -> Any:
    """``model`` after one ``partial_fit`` pass over the rows (the classes it knows kept)."""
    target, x = model, features
    steps = getattr(model, "steps", None)
    if steps:
        target = steps[-1][1]
        if len(steps) > 1:  # the preprocessing learnt on the first fit stays frozen
            x = model[:-1].transform(features)
    classes = getattr(target, "classes_", None)
    if classes is not None:
        target.partial_fit(x, labels, classes=classes)
    else:
        target.partial_fit(x, labels)
    return model


def apply_update(
    update: str | None, train: str, model: Any, frame: pd.DataFrame, params: dict[str, Any]
) -> Any:
    """Runs on the executor: the updated model. ``update(model, frame, params)`` when the
    spec names one, else ``partial_fit``; with no champion yet, ``train(frame, params)``
    trains the first model. ``params['label']`` names the label column."""
    if model is None:
        return load_train_function(train)(frame, params)
    if update is not None:
        function: Callable[..., Any] = load_train_function(update, field="update")
        return function(model, frame, params)
    label = params["label"]
    return partial_fit(model, frame.drop(columns=[label]), frame[label])


def check_updatable(services: Any, job: JobArgs) -> None:
    """At apply time: an incremental spec without ``update`` needs a champion keel can
    update with ``partial_fit`` (none yet is fine: the first run trains one).
    InvalidInput naming ``args.retrain.mode`` otherwise."""
    if job.retrain.mode != "incremental" or job.retrain.update is not None or services is None:
        return
    version, native = promotion.champion_model(services, job.model)
    if native is not None and not updatable(native):
        kind = type(_final_step(native)).__name__
        raise InvalidInput(
            f"args.retrain.mode: incremental updates need partial_fit, and {job.model} "
            f"v{version} ({kind}) has none; name an update function "
            "(retrain.update: 'package.module:update', update(model, frame, params) -> "
            "model) or use mode: full",
            field="args.retrain.mode",
        )
