"""R-CICD-08 runtime gates on registered churn models: equivalence with the ONNX conversion
(checked against the exported file run by ONNX Runtime directly) or the champion, edge rows,
peak memory, warm-up and the library versions recorded at logging time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnxruntime
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from keel.automation.gates import parse_policy, run_gates, to_markdown
from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.registry.flavors.base import library_version
from keel.serving.export import export_onnx

NUMBERS = ["tenure", "monthly_charges", "total_charges"]
CATEGORIES = ["contract", "internet_service"]
COLUMNS = NUMBERS + CATEGORIES
OFF = {
    name: {"enabled": False}
    for name in ("latency", "stress", "size", "floor", "margin", "overfit", "calibration")
}
ONLY = {
    "equivalence": {"enabled": False},
    "runtime": {"memory": {"enabled": False}, "warmup": {"enabled": False},
                "versions": {"enabled": False}},
}  # fmt: skip


def _logistic(train: pd.DataFrame, numbers: list[str]) -> Any:
    encode = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        (OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=1000))
    return model.fit(train[numbers + CATEGORIES], train[TARGET])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    frame = load_churn().drop(columns=["customer_id"])[COLUMNS + [TARGET]]
    train, _, holdout = split(frame, 7)
    root = tmp_path_factory.mktemp("runtime")
    client = Client(settings=Settings(home=root / "keel"))
    example = train[COLUMNS].head(20)
    models = [
        _logistic(train, NUMBERS),  # v1: every feature
        _logistic(train, ["tenure"]),  # v2: tenure and the categories only
        lgb.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(
            train[COLUMNS], train[TARGET]
        ),  # v3
    ]
    for model in models:
        with client.start_run("churn", capture_env=False) as run:
            run.log_model(model, input_example=example, registered_name="churn")
    yield {"client": client, "root": root, "train": train,
           "holdout": holdout.head(500).reset_index(drop=True)}  # fmt: skip
    client.close()


def _load(env: Any, version: int) -> Any:
    return env["client"].load_model(f"models:/churn/{version}")


def _gates(env: Any, model: Any, champion: Any = None, **sections: Any) -> Any:
    policy = parse_policy({**OFF, **sections})
    signature = getattr(model, "signature", None)  # as keel validate passes the version's
    return run_gates(model, env["holdout"], TARGET, policy, champion=champion, signature=signature)


def _onnx_file_scores(env: Any, version: int, rows: pd.DataFrame) -> np.ndarray:
    """The exported file (keel models export's code path) run by ONNX Runtime directly."""
    client = env["client"]
    item = client.resolve(f"models:/churn/{version}")
    out = env["root"] / f"v{version}.onnx"
    export_onnx(client.transport.model_dir(item), out, model="churn", version=version,
                measure_latency=False)  # fmt: skip
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = {}
    for spec in session.get_inputs():
        column = rows[spec.name]
        if spec.type == "tensor(string)":
            feed[spec.name] = column.astype(str).to_numpy(object).reshape(-1, 1)
        else:
            feed[spec.name] = column.to_numpy(np.float32).reshape(-1, 1)
    outputs = session.run(None, feed)
    return np.asarray(outputs[1], np.float64)[:, 1]


@pytest.mark.parametrize("version", [1, 3])
def test_onnx_equivalence_matches_the_exported_file(env: Any, version: int) -> None:
    model = _load(env, version)
    report = _gates(env, model, **ONLY, stress={"rows": 50})
    gate = report.gate("runtime.equivalence")
    mine = model.predict_proba(env["holdout"][COLUMNS])[:, 1]
    theirs = _onnx_file_scores(env, version, env["holdout"])
    changed = (mine >= 0.5) != (theirs >= 0.5)
    assert gate.numbers["reference"] == "onnx" and gate.numbers["rows"] == 500
    assert gate.numbers["class_changes"] == int(changed.sum())
    assert gate.numbers["max_proba_diff"] == pytest.approx(np.abs(mine - theirs).max(), abs=1e-7)
    assert gate.status == "pass" and gate.numbers["max_proba_diff"] < 1e-4, gate.reason
    edge = report.gate("runtime.edge")
    assert edge.status == "pass", edge.reason
    # the stress gate's cases, from the one generator, through the ONNX graph too
    assert set(edge.numbers["cases"]) == set(report.gate("stress").numbers["cases"])
    assert {"below training range", "unseen category"} <= set(edge.numbers["cases"])
    markdown = to_markdown(report)
    assert "| runtime.equivalence | ✅ pass |" in markdown
    assert "| runtime.equivalence | class_diff_share |" in markdown


def test_a_different_reference_fails_with_the_share_of_changed_rows(env: Any) -> None:
    challenger, champion = _load(env, 1), _load(env, 2)
    policy = {**ONLY, "runtime": {**ONLY["runtime"], "equivalence": {"reference": "champion"}}}
    report = _gates(env, challenger, champion=champion, **policy)
    gate = report.gate("runtime.equivalence")
    rows = env["holdout"][COLUMNS]
    new, old = challenger.predict_proba(rows)[:, 1], champion.predict_proba(rows)[:, 1]
    share = float(np.mean((new >= 0.5) != (old >= 0.5)))
    assert share > 0.001 and gate.value == pytest.approx(share)
    assert gate.status == "fail" and f"{int(round(share * 500))} of 500 rows" in gate.reason
    assert not report.passed
    alone = _gates(env, challenger, **policy)  # no champion: nothing to compare with
    assert alone.gate("runtime.equivalence").status == "skipped"


class _Hungry:
    """A model whose prediction allocates 64 MiB and whose first call takes 0.3 s."""

    classes = [0, 1]

    def __init__(self) -> None:
        self.calls = 0

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.3)
        scratch = np.ones(8 * 2**20)  # 8 Mi float64 = 64 MiB
        p = np.full(len(frame), scratch[0] * 0.3)
        del scratch
        return np.column_stack([1 - p, p])


def test_memory_peak_and_warmup_are_measured_and_gated(env: Any) -> None:
    runtime = {"equivalence": {"enabled": False}, "edge": {"enabled": False},
               "memory": {"budget_mb": 32}, "warmup": {"max_ratio": 3, "repeats": 5},
               "versions": {"enabled": False}}  # fmt: skip
    report = _gates(env, _Hungry(), runtime=runtime)
    memory = report.gate("runtime.memory")
    assert memory.status == "fail" and 64 <= memory.value < 66, memory.reason
    assert memory.numbers["method"] == "tracemalloc" and "> budget 32 MiB" in memory.reason
    # the peak RSS (Linux, reset before the call) sees the 64 MiB of touched pages too
    assert memory.numbers["rss_peak_delta_mb"] >= 60
    warm = report.gate("runtime.warmup")
    assert warm.status == "fail" and warm.numbers["first_ms"] >= 300
    assert warm.value == pytest.approx(warm.numbers["first_ms"] / warm.numbers["steady_median_ms"])
    assert "runtime.equivalence" in {g.name for g in report.gates}  # shown, as skipped
    real = _gates(env, _load(env, 1), runtime={**runtime, "warmup": {"repeats": 5}})
    assert real.gate("runtime.memory").status == "pass"
    assert "reported, not gated" in real.gate("runtime.warmup").reason
    assert real.gate("runtime.warmup").status == "pass"


def test_versions_recorded_at_logging_time_against_this_environment(env: Any) -> None:
    runtime = {"equivalence": {"enabled": False}, "edge": {"enabled": False},
               "memory": {"enabled": False}, "warmup": {"enabled": False}}  # fmt: skip
    model = _load(env, 1)
    same = _gates(env, model, runtime=runtime).gate("runtime.versions")
    assert same.status == "pass", same.reason
    libraries = same.numbers["libraries"]
    assert libraries["scikit-learn"]["installed"] == library_version("scikit-learn")
    assert libraries["python"]["verdict"] == "ok"
    installed = library_version("scikit-learn") or ""
    major, minor = installed.split(".")[:2]
    model.metadata["flavor_meta"]["sklearn_version"] = f"{major}.{minor}.999"
    patch = _gates(env, model, runtime=runtime).gate("runtime.versions")
    assert patch.status == "pass"
    assert patch.numbers["libraries"]["scikit-learn"]["verdict"] == "patch differs"
    model.metadata["flavor_meta"]["sklearn_version"] = f"{major}.{int(minor) + 1}.0"
    newer = _gates(env, model, runtime=runtime).gate("runtime.versions")
    assert newer.status == "fail" and newer.value == 1.0
    assert f"scikit-learn {major}.{int(minor) + 1}.0 recorded, {installed} installed" in (
        newer.reason
    )


def test_runtime_on_an_unregistered_model_says_why(env: Any, tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    plain = DummyClassifier(strategy="prior").fit(env["train"][COLUMNS], env["train"][TARGET])
    report = _gates(env, plain, runtime={"warmup": {"repeats": 3}})
    assert report.gate("runtime.equivalence").status == "skipped"
    assert "signature" in report.gate("runtime.equivalence").reason
    assert report.gate("runtime.versions").status == "fail"  # asked for, cannot compute
