"""``keel monitor drift`` on real files: verdicts, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from keel.cli.main import app

runner = CliRunner()


@pytest.fixture
def samples(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(4)
    ref = pd.DataFrame({"tenure": rng.normal(30, 5, 600), "plan": rng.choice(["a", "b"], 600)})
    cur = pd.DataFrame({"tenure": rng.normal(36, 5, 600), "plan": rng.choice(["a", "b"], 600)})
    ref.to_parquet(tmp_path / "ref.parquet")
    cur.to_csv(tmp_path / "cur.csv", index=False)
    return tmp_path / "ref.parquet", tmp_path / "cur.csv"


def test_drift_json_names_the_drifted_feature_and_exits_1(samples: tuple[Path, Path]) -> None:
    result = runner.invoke(app, ["monitor", "drift", str(samples[0]), str(samples[1]), "--json"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["drifted"] == ["tenure"]
    assert payload["features"][0]["feature"] == "tenure" and payload["features"][0]["test"] == "ks"


def test_no_drift_exits_0_with_a_table(samples: tuple[Path, Path]) -> None:
    result = runner.invoke(app, ["monitor", "drift", str(samples[0]), str(samples[0])])
    assert result.exit_code == 0, result.output
    assert "0 of 2 features drifted" in result.stdout


def test_overrides_apply(samples: tuple[Path, Path]) -> None:
    args = ["monitor", "drift", str(samples[0]), str(samples[1]), "--json"]
    result = runner.invoke(app, [*args, "--test", "tenure=psi", "--threshold", "tenure=5"])
    payload = json.loads(result.stdout)
    row = next(r for r in payload["features"] if r["feature"] == "tenure")
    assert result.exit_code == 0 and row["test"] == "psi" and row["threshold"] == 5.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--test", "tenure"], "--test: expected FEATURE=VALUE"),
        (["--threshold", "tenure=high"], "--threshold: 'high' is not a number"),
        (["--test", "plan=ks"], "does not apply to a categorical feature"),
        (["--feature", "nope"], "features: not in the reference: nope"),
        (["--correction", "holm"], "correction: expected bh, bonferroni or none"),
    ],
)
def test_bad_options_exit_2_with_the_field(
    samples: tuple[Path, Path], extra: list[str], message: str
) -> None:
    result = runner.invoke(app, ["monitor", "drift", str(samples[0]), str(samples[1]), *extra])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_missing_and_unreadable_files_exit_2(tmp_path: Path, samples: tuple[Path, Path]) -> None:
    missing = runner.invoke(
        app, ["monitor", "drift", str(tmp_path / "no.parquet"), str(samples[1])]
    )
    assert missing.exit_code == 2 and "reference: no such file" in missing.stderr
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    bad = runner.invoke(app, ["monitor", "drift", str(samples[0]), str(tmp_path / "bad.parquet")])
    assert bad.exit_code == 2 and "current: cannot read bad.parquet" in bad.stderr
    (tmp_path / "x.json").write_text("{}")
    wrong = runner.invoke(app, ["monitor", "drift", str(samples[0]), str(tmp_path / "x.json")])
    assert wrong.exit_code == 2 and "expected a .parquet or .csv file" in wrong.stderr
