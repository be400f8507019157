"""The fairness gate (R-GOV-02), pure: fairlearn's demographic parity and equalised-odds
differences of the challenger's decisions, per declared sensitive column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from keel.automation.gates.checks import label_problem
from keel.automation.gates.policy import FairnessPolicy
from keel.automation.gates.result import GateResult, cannot_compute, judged
from keel.errors import Unavailable

__all__ = ["fairness_gate"]


def _fairlearn() -> Any:
    try:
        import fairlearn.metrics as fm
    except ImportError as exc:  # the fairness extra is missing
        raise Unavailable(
            "the fairness gate needs fairlearn: pip install 'keelml[fairness]'"
        ) from exc
    return fm


def fairness_gate(
    frame: pd.DataFrame,
    y_true: ArrayLike,
    decisions: ArrayLike,
    policy: FairnessPolicy,
) -> GateResult:
    """Both differences at most their thresholds on every column in ``sensitive_columns``.

    ``decisions`` are the 0/1 decisions at the report's decision threshold. A column with
    one group only, or a holdout with one class, cannot be judged: the gate fails.
    """
    fm = _fairlearn()
    y, d = np.asarray(y_true), np.asarray(decisions)
    missing = [c for c in policy.sensitive_columns if c not in frame.columns]
    if missing:
        return cannot_compute("fairness", f"sensitive column(s) not in the holdout: {missing}")
    problem = label_problem(y)
    if problem:
        return cannot_compute("fairness", problem)
    per_column: dict[str, dict[str, float]] = {}
    breaches: list[str] = []
    worst = 0.0
    for column in policy.sensitive_columns:
        groups = frame[column].astype("object").fillna("<missing>").to_numpy()
        if np.unique(groups).size < 2:
            return cannot_compute("fairness", f"{column} has one group only")
        dp = float(fm.demographic_parity_difference(y, d, sensitive_features=groups))
        eo = float(fm.equalized_odds_difference(y, d, sensitive_features=groups))
        if not (np.isfinite(dp) and np.isfinite(eo)):
            # equalised odds is NaN when a group lacks one of the classes
            return cannot_compute(
                "fairness", f"{column}: a group lacks positives or negatives (DP {dp}, EO {eo})"
            )
        per_column[column] = {"demographic_parity_difference": dp, "equalized_odds_difference": eo}
        worst = max(worst, dp, eo)
        if dp > policy.max_demographic_parity_difference:
            breaches.append(
                f"{column}: demographic parity difference {dp:.4f} > "
                f"{policy.max_demographic_parity_difference:g}"
            )
        if eo > policy.max_equalized_odds_difference:
            breaches.append(
                f"{column}: equalised odds difference {eo:.4f} > "
                f"{policy.max_equalized_odds_difference:g}"
            )
    if breaches:
        reason = "; ".join(breaches)
    else:
        parts = ", ".join(
            f"{c} DP {v['demographic_parity_difference']:.4f} "
            f"EO {v['equalized_odds_difference']:.4f}"
            for c, v in per_column.items()
        )
        reason = f"within thresholds: {parts}"
    threshold = min(policy.max_demographic_parity_difference, policy.max_equalized_odds_difference)
    return judged(
        "fairness",
        not breaches,
        reason,
        worst,
        threshold,
        columns=per_column,
        max_demographic_parity_difference=policy.max_demographic_parity_difference,
        max_equalized_odds_difference=policy.max_equalized_odds_difference,
    )
