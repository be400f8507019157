"""``keel monitor drift`` refuses overrides for features it does not compare (#15.21)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keel.cli.main import app

runner = CliRunner()


@pytest.fixture
def same_sample(tmp_path: Path) -> Path:
    rng = np.random.default_rng(21)
    frame = pd.DataFrame({"tenure": rng.normal(30, 5, 300), "plan": rng.choice(["a", "b"], 300)})
    frame.to_parquet(tmp_path / "ref.parquet")
    return tmp_path / "ref.parquet"


@pytest.mark.parametrize(
    ("extra", "option", "feature"),
    [
        (["--threshold", "nosuch=0.1"], "--threshold", "nosuch"),
        (["--test", "nosuch=ks"], "--test", "nosuch"),
        (["--threshold", "tenure=0.1", "--test", "Tenure=ks"], "--test", "Tenure"),
        # a real column, but not among the features asked for
        (["--feature", "tenure", "--threshold", "plan=0.1"], "--threshold", "plan"),
    ],
)
def test_drift_unknown_override_feature_exits_2_naming_option_and_feature(
    same_sample: Path, extra: list[str], option: str, feature: str
) -> None:
    args = ["monitor", "drift", str(same_sample), str(same_sample), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert option in result.stderr and repr(feature) in result.stderr
    assert "Traceback" not in result.output


def test_drift_known_override_features_still_run(same_sample: Path) -> None:
    args = ["monitor", "drift", str(same_sample), str(same_sample)]
    result = runner.invoke(app, [*args, "--threshold", "tenure=0.2", "--test", "plan=chi2"])
    assert result.exit_code == 0, result.output
