"""Per-arm ROC AUC computed inside DuckDB (rank-sum formula) equals scikit-learn's."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from keel.deploy.armstats import auc_estimates, roc_auc


def _lab(rows: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("frame", rows)
    con.execute("CREATE TEMP TABLE lab AS SELECT * FROM frame")
    return con


@pytest.mark.parametrize("decimals", [1, 2, 6])  # few decimals: many tied scores
def test_auc_in_duckdb_equals_sklearn_per_group(decimals: int) -> None:
    rng = np.random.default_rng(decimals)
    n = 20_000
    y = (rng.random(n) < 0.3).astype(float)
    score = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1), decimals)
    rows = pd.DataFrame(
        {"arm": rng.choice(["primary", "canary"], n), "seg": rng.choice(["a", "b", "c"], n)}
    )
    rows["score"], rows["y"] = score, y
    with _lab(rows) as con:
        by_arm = auc_estimates(con)
        by_segment = auc_estimates(con, ("arm", "seg"))
    for arm, part in rows.groupby("arm"):
        expected = roc_auc_score(part["y"] == 1, part["score"])
        assert by_arm[(arm,)].value == pytest.approx(expected, abs=1e-9)
        assert by_arm[(arm,)].n == len(part)
        assert roc_auc(part["score"].to_numpy(), (part["y"] == 1).to_numpy()) == pytest.approx(
            expected, abs=1e-9
        )
    assert len(by_segment) == 6
    for (arm, seg), part in rows.groupby(["arm", "seg"]):
        expected = roc_auc_score(part["y"] == 1, part["score"])
        assert by_segment[(arm, seg)].value == pytest.approx(expected, abs=1e-9)


def test_auc_leaves_out_a_group_with_one_class_and_rows_without_score() -> None:
    rows = pd.DataFrame(
        {
            "arm": ["a", "a", "a", "b", "b", "b"],
            "score": [0.9, 0.2, np.nan, 0.5, 0.6, 0.7],
            "y": [1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    with _lab(rows) as con:
        found = auc_estimates(con)
    assert set(found) == {("a",)}
    assert found[("a",)].value == 1.0 and found[("a",)].n == 2
