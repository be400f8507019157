"""Feedback-loop bias guard for retraining (R-TRN-24): exploration rows, inverse-propensity
weights, cohort evaluation and the selective-labels warning.

A model that decides what it later learns from (a hiring model sees outcomes only of the
candidates it accepted) trains on a biased sample. Exploration gives a small, random share
of requests a fixed ``action`` whatever the model said, so their outcomes are observed
without the model's selection. The share is chosen by a stable hash of the routing key
(:func:`explored`): the same key is always explored or always not, in serving and in every
later read of the log, so a logged row's cohort is recomputed from its key and the policy.

The propensity of a row is the probability that the action it got would have been taken:
``share·[taken = action] + (1 − share)·[model's output = taken]``. An accepted row the model
would have accepted anyway has propensity 1; an explored row the model would have rejected
has ``share``. Weighting each labelled row by ``1 / propensity`` (inverse-propensity
weighting) makes the labelled rows stand for all requests again.

When the gateway applies the policy itself (:mod:`keel.serving.exploration`), each logged
row carries ``explore`` and ``propensity`` as served; :func:`mark` takes those as they are
and recomputes only the rows logged without them (before serving explored, or by an
application that applied the action itself), from their key and this spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EXPLORE_COLUMN",
    "PROPENSITY_COLUMN",
    "ExplorationSpec",
    "cohort_metrics",
    "explored",
    "mark",
    "propensities",
    "selective_labels_warning",
]

#: The prediction log's columns the gateway fills for a model with a serving policy.
LOGGED_EXPLORE, LOGGED_PROPENSITY = "explore", "propensity"
#: Internal columns of the assembled rows (never given to ``train``): the row's cohort and
#: its propensity.
EXPLORE_COLUMN = "_explore"
PROPENSITY_COLUMN = "_propensity"
_SCALE = float(2**64)


class ExplorationSpec(BaseModel):
    """A model's exploration policy as a retraining reads it (``retrain.exploration``)."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(gt=0, lt=1, description="Share of requests explored, e.g. 0.05.")
    action: Any = Field(description="The output an explored request gets (e.g. 1: accept).")
    key: Literal["request_id", "entity_key"] = Field(
        default="request_id", description="The routing key the stable hash reads."
    )
    weighting: Literal["ipw", "none"] = Field(
        default="ipw", description="ipw: train with 1/propensity weights; none: unweighted."
    )
    evaluate_on: Literal["all", "explored"] = Field(
        default="all", description="explored: the validation gates see explored rows only."
    )


def explored(keys: Sequence[str | None], share: float, salt: str) -> np.ndarray:
    """Whether each routing key is in the explored share: the first 8 bytes of
    ``sha256(salt + ":" + key)`` as a fraction of 2^64, below ``share``. A missing key is
    never explored (it cannot be recomputed).

    >>> explored(["a", "b", None], 1e-12, "m").tolist()
    [False, False, False]
    """
    out = np.zeros(len(keys), dtype=bool)
    for i, key in enumerate(keys):
        if key is not None:
            digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
            out[i] = int.from_bytes(digest[:8], "big") / _SCALE < share
    return out


def propensities(
    explore: np.ndarray, outputs: Sequence[Any], action: Any, share: float
) -> np.ndarray:
    """The probability of the action each row got (module docstring): explored rows got
    ``action``, the others the model's output."""
    same = np.array([str(o) == str(action) for o in outputs], dtype=bool)
    taken_is_action = explore | same
    return np.where(taken_is_action, share, 0.0) + np.where(explore & ~same, 0.0, 1.0 - share)


def mark(
    labelled: pd.DataFrame, spec: ExplorationSpec, model: str
) -> tuple[np.ndarray, np.ndarray]:
    """The labelled log rows' cohort (explored or not) and propensity: as the gateway logged
    them where it did, else recomputed from the row's key and ``spec``."""
    keys = labelled[spec.key].tolist() if spec.key in labelled.columns else [None] * len(labelled)
    explore = explored([None if k is None or k != k else str(k) for k in keys], spec.share, model)
    outputs = labelled["output"].tolist() if "output" in labelled.columns else [None] * len(keys)
    propensity = propensities(explore, outputs, spec.action, spec.share)
    if LOGGED_EXPLORE in labelled.columns and LOGGED_PROPENSITY in labelled.columns:
        flags, logged = labelled[LOGGED_EXPLORE], labelled[LOGGED_PROPENSITY]
        served = (flags.notna() & logged.notna()).to_numpy(dtype=bool)
        if served.any():  # the served policy's numbers, even if the spec's share differs
            logged_flags = [bool(f) if s else False for f, s in zip(flags, served, strict=True)]
            explore = np.where(served, np.asarray(logged_flags, dtype=bool), explore)
            propensity = np.where(served, logged.to_numpy(dtype=float, na_value=np.nan), propensity)
    return explore, propensity


def cohort_metrics(
    evaluate: Callable[[pd.DataFrame, str], dict[str, float]], holdout: pd.DataFrame
) -> dict[str, float]:
    """``evaluate`` on the holdout's explored and exploited rows apart (``holdout.explore.*``,
    ``holdout.exploit.*``): the explored cohort is the unbiased estimate."""
    if EXPLORE_COLUMN not in holdout.columns or holdout.empty:
        return {}
    flags = holdout[EXPLORE_COLUMN].astype(bool).to_numpy()
    out: dict[str, float] = {}
    for name, rows in (("explore", flags), ("exploit", ~flags)):
        out.update(evaluate(holdout.loc[rows].reset_index(drop=True), f"holdout.{name}"))
        out[f"holdout.{name}.rows"] = float(rows.sum())
    return out


def selective_labels_warning(
    selective: bool, exploration: ExplorationSpec | None, frame: pd.DataFrame
) -> str | None:
    """A warning when a model declares ``selective_labels`` and its training rows hold no
    explored row: its labels then come only from cases it accepted (R-TRN-24)."""
    if not selective:
        return None
    if exploration is None:
        return (
            "selective_labels: no exploration policy (retrain.exploration), so every label "
            "comes from a case the model accepted; the retrained model cannot learn from "
            "the cases it rejects"
        )
    if EXPLORE_COLUMN not in frame.columns or not frame[EXPLORE_COLUMN].astype(bool).any():
        return (
            "selective_labels: the training data has no explored rows (share "
            f"{exploration.share:g}); labels come only from cases the model accepted"
        )
    return None
