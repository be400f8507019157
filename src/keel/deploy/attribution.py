"""Feature attribution of a canary's problems (R-DEP-21): which inputs explain where the
candidate is worse than the primary.

Three views over the deployment's logged rows, each ranking the logged input features:

* **bad vs good rows** of the candidate on the whole window: a row is *bad* when the arm
  failed (``fallback`` or an ``error`` in ``extra``, as the controller counts errors) or,
  where a label exists, when its loss (keel's per-row ``log_loss`` for a classifier that
  logged probabilities, else ``mse``: :func:`keel.deploy.rowmetrics.metric_values`) is
  above the primary's ``BAD_QUANTILE`` quantile of loss on the same window (the
  candidate's own when the primary has too few labelled rows). Per feature, how
  differently bad rows are distributed from good ones: PSI (good rows as the reference,
  numbers binned at their deciles, categories by level) and, for numeric features, the
  two-sample KS test (keel's one PSI and KS: :mod:`keel.monitoring.stats`). Ranked by PSI,
  the one distance defined for both kinds; missing-value rates are shown beside it since
  both statistics drop missing values.
* **step vs earlier step**: the candidate's rows of the step where the problem appears
  against the step before it: the input shift between the two populations (ranked the
  same way) and the bad rates of both, which shows a problem that only appears at a higher
  share because the traffic it then receives is different.
* **permutation importance of the loss gap** (labels and loadable models needed): on up to
  ``PERMUTATION_ROWS`` labelled rows of both arms, gap = mean loss of the candidate's model
  minus the primary's, both scoring the same rows; per feature the column is shuffled
  (the same shuffle for both models) ``REPEATS`` times and the importance is the gap's
  mean drop, so a positive value is the share of the canary's excess loss that goes away
  when the feature carries no information, and a negative one says shuffling it costs
  the canary more than the primary. Ranked by size: either sign is a feature the two
  models depend on differently. Bounded in time by ``TIME_BUDGET_S``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from keel.deploy.rowmetrics import metric_values
from keel.monitoring.diagnosis import model_input
from keel.monitoring.stats import ks, psi
from keel.serving._segments import FEATURE_PREFIX
from keel.serving.predquery import predictions

if TYPE_CHECKING:
    from keel.deploy.debugging import StepWindow
    from keel.deploy.models import Deployment
    from keel.deploy.service import DeploymentService

__all__ = [
    "BAD_QUANTILE",
    "PERMUTATION_ROWS",
    "attribute",
    "bad_rows",
    "feature_shift",
    "gap_importance",
    "read_rows",
    "row_loss",
]

#: Rows read at most (the newest of the window).
MAX_ROWS = 50_000
#: A labelled row is bad when its loss exceeds this quantile of the primary's losses.
BAD_QUANTILE = 0.9
#: Rows sampled for the permutation importance, repeats per feature, and its time bound.
PERMUTATION_ROWS = 5_000
REPEATS = 3
TIME_BUDGET_S = 10.0
#: Features listed per ranking.
TOP = 10
#: Fewer labelled primary rows than this: the candidate's own losses set the threshold.
_MIN_REFERENCE = 20
#: Fewer labelled rows of both arms than this: no permutation importance.
_MIN_LABELLED = 50


def read_rows(
    root: Path,
    labels: Callable[..., pd.DataFrame] | None,
    model: str,
    deployment: str,
    start_ms: int,
    end_ms: int,
) -> pd.DataFrame:
    """The deployment's logged rows in ``[start_ms, end_ms)`` (newest ``MAX_ROWS``): ``arm``,
    ``at_ms``, ``error``, ``output``, ``score`` (last logged probability, NaN without), ``y``
    (the label as a number, NaN without) and one column per logged feature (unprefixed)."""
    from keel.deploy.loggedlabels import logged_labels

    logged = predictions(
        model, start=start_ms, end=end_ms, root=root, deployment=deployment,
        limit=MAX_ROWS, newest=True,
    ).to_pandas()  # fmt: skip
    if logged.empty:  # no file in the window gives no columns at all
        return pd.DataFrame(columns=["arm", "at_ms", "error", "output", "score", "y"])
    features = [c for c in logged.columns if c.startswith(FEATURE_PREFIX)]
    out = logged[features].rename(columns=lambda c: c[len(FEATURE_PREFIX) :])
    extra = logged["extra"].fillna("") if "extra" in logged else pd.Series("", index=logged.index)
    out["arm"] = logged["arm"].to_numpy()
    # the log's resolution (ns or us) varies with the reader: count milliseconds explicitly
    since_epoch = pd.to_datetime(logged["ts"], utc=True) - pd.Timestamp(0, tz="UTC")
    out["at_ms"] = (since_epoch // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64)
    out["error"] = (
        logged["fallback"].fillna(False).astype(bool) | extra.str.contains('"error"', regex=False)
    ).to_numpy()
    out["output"] = logged["output"].astype(str).to_numpy()
    probabilities = logged["probabilities"] if "probabilities" in logged else None
    out["score"] = (
        [p[-1] if p is not None and len(p) else np.nan for p in probabilities]
        if probabilities is not None
        else np.nan
    )
    truth = logged_labels(logged, labels, model, start_ms).labels
    out["y"] = pd.to_numeric(truth, errors="coerce").to_numpy(dtype=np.float64)
    return out.reset_index(drop=True)


def feature_names(rows: pd.DataFrame) -> list[str]:
    """The logged feature columns of a :func:`read_rows` frame."""
    fixed = {"arm", "at_ms", "error", "output", "score", "y"}
    return [str(c) for c in rows.columns if c not in fixed]


def row_loss(rows: pd.DataFrame) -> tuple[str, np.ndarray[Any, Any]]:
    """keel's per-row loss of each row (NaN without a label): ``log_loss`` when scores were
    logged, else ``mse`` of the output."""
    name = "log_loss" if rows["score"].notna().any() else "mse"
    values = metric_values(name, rows.assign(t=None))
    assert values is not None  # a mean metric: never None
    return name, values


def bad_rows(
    candidate: pd.DataFrame, primary: pd.DataFrame
) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    """The candidate's bad rows (errors, or loss above the primary's ``BAD_QUANTILE``
    quantile on the same window) and how they were defined."""
    loss_name, loss = row_loss(candidate)
    reference = row_loss(primary)[1] if len(primary) else np.array([])
    reference = reference[~np.isnan(reference)]
    source = "primary"
    if reference.size < _MIN_REFERENCE:
        reference, source = loss[~np.isnan(loss)], "candidate"
    threshold = float(np.quantile(reference, BAD_QUANTILE)) if reference.size else None
    errors = candidate["error"].to_numpy(dtype=bool)
    high = np.zeros(len(candidate), dtype=bool)
    if threshold is not None:
        high = np.nan_to_num(loss, nan=-np.inf) > threshold
    bad = errors | high
    return bad, {
        "loss": loss_name,
        "threshold": threshold,
        "threshold_from": f"{source} rows, quantile {BAD_QUANTILE}"
        if threshold is not None
        else None,
        "errors": int(errors.sum()),
        "high_loss": int((high & ~errors).sum()),
        "bad": int(bad.sum()),
        "good": int((~bad).sum()),
    }


def _numeric(values: pd.Series) -> pd.Series | None:
    """The column as numbers when every non-missing value is one, else None (a category)."""
    if pd.api.types.is_bool_dtype(values):
        return None
    as_numbers = pd.to_numeric(values, errors="coerce")
    return as_numbers if as_numbers.notna().sum() == values.notna().sum() else None


def feature_shift(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str]
) -> list[dict[str, Any]]:
    """Per feature, ``current`` against ``reference``: PSI, KS (numeric features), means or
    the most over-represented level, and missing rates; ranked by PSI, largest first."""
    out: list[dict[str, Any]] = []
    if len(reference) == 0 or len(current) == 0:
        return out
    for name in features:
        ref, cur = reference[name], current[name]
        both = pd.concat([ref, cur], ignore_index=True)
        entry: dict[str, Any] = {
            "feature": name,
            "missing_rate": {
                "reference": float(ref.isna().mean()),
                "current": float(cur.isna().mean()),
            },
        }
        numbers = _numeric(both)
        if numbers is not None:
            r = numbers.iloc[: len(ref)].to_numpy(dtype=np.float64)
            c = numbers.iloc[len(ref) :].to_numpy(dtype=np.float64)
            if np.isnan(r).all() or np.isnan(c).all():
                continue
            test = ks(r, c)
            entry.update(
                kind="numeric",
                psi=float(psi(r, c).statistic),
                ks=float(test.statistic),
                ks_pvalue=float(test.pvalue),  # type: ignore[arg-type]
                mean={"reference": float(np.nanmean(r)), "current": float(np.nanmean(c))},
            )
        else:
            r_text, c_text = ref.dropna().astype(str), cur.dropna().astype(str)
            if r_text.empty or c_text.empty:
                continue
            ref_share = r_text.value_counts(normalize=True)
            cur_share = c_text.value_counts(normalize=True)
            lift = cur_share.sub(ref_share, fill_value=0.0).sort_values(ascending=False)
            entry.update(
                kind="categorical",
                psi=float(
                    psi(r_text.to_numpy(dtype=object), c_text.to_numpy(dtype=object)).statistic
                ),
                ks=None,
                ks_pvalue=None,
                over_represented={
                    "value": str(lift.index[0]),
                    "share_difference": float(lift.iloc[0]),
                },
            )
        out.append(entry)
    out.sort(key=lambda e: (-e["psi"], -(e["ks"] or 0.0), e["feature"]))
    return out


def _mean_loss(model: Any, rows: pd.DataFrame, y: np.ndarray[Any, Any], loss: str) -> float:
    """Mean of keel's per-row ``loss`` of ``model`` on ``rows`` against ``y``."""
    if loss == "log_loss":
        score = np.asarray(model.predict_proba(rows))[:, -1]
        frame = pd.DataFrame({"output": score, "score": score, "y": y})
    else:
        output = pd.to_numeric(pd.Series(np.asarray(model.predict(rows))), errors="coerce")
        frame = pd.DataFrame({"output": output.to_numpy(), "score": np.nan, "y": y})
    values = metric_values(loss, frame)
    assert values is not None
    return float(np.nanmean(values))


def gap_importance(
    primary: Any,
    candidate: Any,
    rows: pd.DataFrame,
    y: np.ndarray[Any, Any],
    *,
    loss: str,
    seed: int = 0,
    repeats: int = REPEATS,
    budget_s: float = TIME_BUDGET_S,
) -> dict[str, Any]:
    """Permutation importance of the loss gap (candidate minus primary) per column of
    ``rows``: the gap's mean drop when the column is shuffled. Shuffles come from
    ``numpy.random.default_rng(seed)``, one ``permutation(len(rows))`` per feature and
    repeat in column order; features left when ``budget_s`` runs out are not measured.
    Ranked by the importance's absolute value."""
    began = time.perf_counter()
    columns = [str(c) for c in rows.columns]
    # Each model's input is built once (the signature's coercion costs more than scoring);
    # a shuffle moves the column in the inputs of the models that read it, the same order
    # for both, and a model that does not read it keeps its loss.
    models = (candidate, primary)
    inputs = [model_input(m, rows, columns) for m in models]
    losses = [_mean_loss(m, x, y, loss) for m, x in zip(models, inputs, strict=True)]
    base = losses[0] - losses[1]
    rng = np.random.default_rng(seed)
    found: list[dict[str, Any]] = []
    for name in columns:
        if time.perf_counter() - began > budget_s:
            break
        drops = []
        for _ in range(repeats):
            order = rng.permutation(len(rows))
            after = []
            for model, x, before in zip(models, inputs, losses, strict=True):
                if name not in x.columns:
                    after.append(before)
                    continue
                shuffled = x.copy()
                shuffled[name] = x[name].iloc[order].set_axis(x.index)  # keeps the dtype
                after.append(_mean_loss(model, shuffled, y, loss))
            drops.append(base - (after[0] - after[1]))
        found.append(
            {"feature": name, "importance": float(np.mean(drops)), "std": float(np.std(drops))}
        )
    # by size: either sign says the two models depend on the feature differently
    found.sort(key=lambda e: (-abs(e["importance"]), e["feature"]))
    return {
        "loss": loss,
        "rows": len(rows),
        "repeats": repeats,
        "seed": seed,
        "gap": base,
        "complete": len(found) == len(columns),
        "features": found[:TOP],
    }


def attribute(
    service: DeploymentService,
    deployment: Deployment,
    primary: str,
    candidate: str,
    windows: Sequence[StepWindow],
    problem_step: int | None,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``attribution`` section of the debug report (see the module docstring) over the
    candidate's steps ``windows``; ``problem_step``: the step a problem was first flagged
    at (default: the last step), compared with the step before it."""
    root = service.predictions_root
    if root is None or not windows:
        return {"skipped": "no logged requests in the window"}
    rows = read_rows(
        root, service.labels, deployment.model, deployment.name,
        windows[0].from_ms, windows[-1].to_ms,
    )  # fmt: skip
    features = feature_names(rows)
    mine = rows[rows["arm"] == candidate].reset_index(drop=True)
    bad, definition = bad_rows(mine, rows[rows["arm"] == primary])
    return {
        "rows": {"candidate": len(mine), "primary": int((rows["arm"] == primary).sum())},
        "features": features,
        "bad_rows": definition,
        "ranking": "psi",
        "bad_vs_good": feature_shift(mine[~bad], mine[bad], features)[:TOP],
        "step_vs_earlier": _steps(mine, bad, windows, problem_step, features),
        "permutation": _permutation(service, deployment, primary, candidate, rows, features, seed),
    }


def _steps(
    rows: pd.DataFrame,
    bad: np.ndarray[Any, Any],
    windows: Sequence[StepWindow],
    problem_step: int | None,
    features: Sequence[str],
) -> dict[str, Any] | None:
    """The candidate's rows of the problem step against the step before: input shift and
    bad rates (None with a single step)."""
    index = next((i for i, w in enumerate(windows) if w.step == problem_step), len(windows) - 1)
    if index < 1:
        return None
    later, earlier = windows[index], windows[index - 1]
    at = rows["at_ms"].to_numpy()

    def inside(w: StepWindow) -> np.ndarray[Any, Any]:
        return np.asarray((at >= w.from_ms) & (at < w.to_ms))

    before, after = inside(earlier), inside(later)
    return {
        "step": later.step,
        "share": later.share,
        "earlier_step": earlier.step,
        "earlier_share": earlier.share,
        "rows": {"earlier": int(before.sum()), "step": int(after.sum())},
        "bad_rate": {
            "earlier": float(bad[before].mean()) if before.any() else None,
            "step": float(bad[after].mean()) if after.any() else None,
        },
        "input_shift": feature_shift(rows[before], rows[after], features)[:TOP],
    }


def _permutation(
    service: DeploymentService,
    deployment: Deployment,
    primary: str,
    candidate: str,
    rows: pd.DataFrame,
    features: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    """:func:`gap_importance` on a seeded sample of both arms' labelled rows, or why not."""
    labelled = rows[rows["arm"].isin([primary, candidate]) & rows["y"].notna()]
    if len(labelled) < _MIN_LABELLED:
        return {"skipped": f"{len(labelled)} labelled rows (at least {_MIN_LABELLED} needed)"}
    if service.model_loader is None:
        return {"skipped": "no model loader configured"}
    sample = labelled.sample(n=min(PERMUTATION_ROWS, len(labelled)), random_state=seed)
    loss = row_loss(sample)[0]
    try:
        models = [
            service.model_loader(
                service.registry.get_version(deployment.model, deployment.versions[arm])
            )
            for arm in (primary, candidate)
        ]
        if loss == "log_loss" and not all(hasattr(m, "predict_proba") for m in models):
            return {"skipped": "a model gives no probabilities for log_loss"}
        found = gap_importance(
            models[0], models[1], sample[list(features)].reset_index(drop=True),
            sample["y"].to_numpy(dtype=np.float64), loss=loss, seed=seed,
        )  # fmt: skip
    except Exception as exc:  # a model that cannot load or score: reported, not raised
        return {"skipped": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return {"versions": {primary: deployment.versions[primary],
                         candidate: deployment.versions[candidate]}, **found}  # fmt: skip
