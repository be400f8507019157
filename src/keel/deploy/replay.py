"""Replay (R-TRK-11): re-score a deployment's logged requests with candidate versions.

Before any live traffic is risked, the rows a deployment logged in a window are scored
again by each candidate version, loaded the one way keel loads models (the registry's
files through the settings' ``allow_pickle`` / trusted classes), and compared with what
was answered: agreement with the logged output, the distribution shift of the scores
(PSI and KS from :mod:`keel.monitoring.stats`), latency per row (p50/p99 of per-row
scoring), and, over the rows with labels (feedback joined to each row of a request by
:mod:`keel.deploy.loggedlabels`, which also counts the requests whose rows it cannot tell
apart), the metrics: accuracy and ROC AUC for classifiers, MAE and RMSE for regressors.
``synthetic`` adds generated test cases (marginal samples, edge values, missing and
out-of-range values) scored by every version on the same rows (:mod:`keel.deploy.synthetic`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keel._durations import parse_time
from keel._models import MAX_VERSION, invalid_input
from keel.deploy.armstats import roc_auc
from keel.deploy.loggedlabels import logged_labels
from keel.deploy.synthetic import MAX_SYNTHETIC, generate, score_cases
from keel.errors import InvalidInput, NotFound
from keel.monitoring.diagnosis import model_input
from keel.monitoring.stats import ks, psi
from keel.registry.models import ModelVersion
from keel.serving._segments import FEATURE_PREFIX
from keel.serving.predquery import predictions

__all__ = [
    "MAX_ROWS",
    "ReplayRequest",
    "check_request",
    "replay",
    "resolve_versions",
]

#: Rows replayed at most (the newest of the window).
MAX_ROWS = 100_000
#: Rows scored one at a time to measure latency per row.
_TIMED_ROWS = 200
#: Candidate versions in one replay at most (each loads a model and scores every row).
MAX_VERSIONS = 20


class ReplayRequest(BaseModel):
    """What to replay: the body of ``POST /v1/deployments/{name}/replay``, also checked by
    the SDK before either transport is called, so both raise the same error."""

    model_config = ConfigDict(extra="forbid")
    versions: list[Annotated[int, Field(le=MAX_VERSION)]] = Field(
        min_length=1, max_length=MAX_VERSIONS
    )
    since: str | int = Field(default="7d", description="Epoch ms, ISO-8601 or an age (7d).")
    limit: int | None = Field(default=None, ge=1, le=MAX_ROWS)
    synthetic: int | None = Field(
        default=None, ge=1, le=MAX_SYNTHETIC, description="Synthetic rows per case kind."
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed of the synthetic rows.")

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | int) -> str | int:
        try:
            parse_time(value, "since")  # refused here rather than after models are loaded
        except InvalidInput as exc:  # the reason alone: pydantic's location names the field
            raise ValueError(exc.message.removeprefix("since ")) from None
        return value


def check_request(
    versions: Sequence[int],
    since: str | int = "7d",
    limit: int | None = None,
    synthetic: int | None = None,
    seed: int = 0,
) -> ReplayRequest:
    """A :class:`ReplayRequest`; InvalidInput naming ``versions[i]``, ``since``, ``limit``,
    ``synthetic`` or ``seed``."""
    try:
        return ReplayRequest(
            versions=list(versions), since=since, limit=limit, synthetic=synthetic, seed=seed
        )
    except ValidationError as exc:
        raise invalid_input(exc) from None


def replay(
    *,
    root: Path | None,
    model: str,
    deployment: str,
    versions: Sequence[ModelVersion],
    since: str | int,
    limit: int | None,
    load: Callable[[ModelVersion], Any],
    labels: Callable[..., pd.DataFrame] | None,
    synthetic: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Per version: ``agreement``, ``psi``, ``ks``, ``latency_ms`` (p50/p99), ``metrics``
    over the newest ``limit`` logged requests since ``since``; with ``synthetic``, also
    ``synthetic``: that many generated rows per case kind scored by every version
    (:mod:`keel.deploy.synthetic`, drawn with ``seed``). InvalidInput names
    ``since``/``limit``/``synthetic``, or says there are no logged requests in the window."""
    start = parse_time(since, "since")
    if limit is not None and not 1 <= limit <= MAX_ROWS:
        raise InvalidInput(f"limit: expected 1..{MAX_ROWS}", field="limit")
    if synthetic is not None and not 1 <= synthetic <= MAX_SYNTHETIC:
        raise InvalidInput(f"synthetic: expected 1..{MAX_SYNTHETIC}", field="synthetic")
    if root is None:
        raise InvalidInput(
            "since: no logged requests in the window (no prediction log)", field="since"
        )
    table = predictions(
        model, start=start, root=root, deployment=deployment, limit=limit or MAX_ROWS, newest=True
    )
    logged = table.to_pandas()
    if logged.empty:
        raise InvalidInput(
            f"since: no logged requests in the window (deployment {deployment!r} since {since})",
            field="since",
        )
    features = logged[[c for c in logged.columns if c.startswith(FEATURE_PREFIX)]]
    features.columns = [c[len(FEATURE_PREFIX) :] for c in features.columns]
    found = logged_labels(logged, labels, model, start)
    truth = found.labels
    models = [(version.version, load(version)) for version in versions]
    results = []
    for number, loaded in models:
        rows = model_input(loaded, features, list(features.columns))
        results.append(_score(number, loaded, rows, logged, truth))
    report: dict[str, Any] = {
        "deployment": deployment,
        "model": model,
        "since": start.isoformat() if start else None,
        "rows": len(logged),
        "labelled": int(truth.notna().sum()),
        "ambiguous_labels": found.report(),
        "versions": results,
    }
    if synthetic is not None:
        signature = getattr(models[0][1], "signature", None)
        cases = generate(features, signature, synthetic, seed)
        columns = list(cases["marginal samples"][0].columns)
        report["synthetic"] = {
            "rows_per_case": synthetic,
            "seed": seed,
            "compared_with": models[0][0],
            "cases": score_cases(cases, models, columns),
        }
    return report


def _score(
    version: int, model: Any, rows: pd.DataFrame, logged: pd.DataFrame, truth: pd.Series
) -> dict[str, Any]:
    predicted = np.asarray(model.predict(rows))
    proba = None
    if hasattr(model, "predict_proba"):
        try:
            proba = np.asarray(model.predict_proba(rows))[:, -1]
        except (AttributeError, NotImplementedError, ValueError):
            proba = None
    old_out = pd.to_numeric(logged["output"], errors="coerce").to_numpy(dtype=float)
    new_out = pd.to_numeric(pd.Series(predicted), errors="coerce").to_numpy(dtype=float)
    same = [str(a) == str(b) for a, b in zip(logged["output"], predicted, strict=True)]
    agreement = float(np.mean(same))
    if proba is not None and "probabilities" in logged.columns:
        old_scores = np.array(
            [p[-1] if p is not None and len(p) else np.nan for p in logged["probabilities"]]
        )
        new_scores = proba
    else:
        old_scores, new_scores = old_out, new_out
    keep = ~(np.isnan(old_scores) | np.isnan(new_scores))
    shift: dict[str, Any] = {"psi": None, "ks": None}
    if keep.sum() >= 2:
        shift = {
            "psi": float(psi(old_scores[keep], new_scores[keep]).statistic),
            "ks": float(ks(old_scores[keep], new_scores[keep]).statistic),
        }
    timings = []
    for i in range(min(_TIMED_ROWS, len(rows))):
        began = time.perf_counter()
        model.predict(rows.iloc[i : i + 1])
        timings.append((time.perf_counter() - began) * 1000)
    return {
        "version": version,
        "agreement": agreement,
        **shift,
        "latency_ms": {
            "p50": float(np.percentile(timings, 50)),
            "p99": float(np.percentile(timings, 99)),
            "rows_timed": len(timings),
        },
        "metrics": _metrics(predicted, proba, truth),
    }


def _metrics(predicted: Any, proba: Any, truth: pd.Series) -> dict[str, float]:
    has = truth.notna().to_numpy()
    if not has.any():
        return {}
    y = truth[has]
    if proba is not None:  # a classifier
        out = {
            "accuracy": float(
                np.mean([str(p) == str(t) for p, t in zip(predicted[has], y, strict=True)])
            )
        }
        positive = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float) == 1
        if 0 < positive.sum() < positive.size:
            out["roc_auc"] = roc_auc(proba[has], positive)
        return out
    error = pd.to_numeric(pd.Series(predicted[has]), errors="coerce").to_numpy(dtype=float) - (
        pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
    )
    return {"mae": float(np.nanmean(np.abs(error))), "rmse": float(np.sqrt(np.nanmean(error**2)))}


def resolve_versions(registry: Any, model: str, versions: Sequence[int]) -> list[ModelVersion]:
    """The registry's versions; InvalidInput naming ``versions`` for an unknown one."""
    if not versions:
        raise InvalidInput("versions: name at least one version", field="versions")
    found = []
    for v in versions:
        try:
            found.append(registry.get_version(model, int(v)))
        except (NotFound, ValueError):
            raise InvalidInput(
                f"versions: model {model!r} has no version {v}", field="versions"
            ) from None
    return found
