"""The SDK behaves the same embedded and over HTTP (the `client` fixture runs both)."""

from __future__ import annotations

import getpass
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression

import keel
from keel.client import Client
from keel.registry.models import ModelStatus
from keel.tracking.models import RunStatus


@pytest.fixture(scope="module")
def cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


@pytest.fixture(scope="module")
def fitted(cancer: tuple[pd.DataFrame, pd.Series]) -> LogisticRegression:
    X, y = cancer
    return LogisticRegression(max_iter=5000).fit(X, y)


def test_run_context_finishes_and_records_everything(client: Client) -> None:
    with client.start_run(experiment="churn", name="r", seed=42) as run:
        run.log_params({"model": "lgbm", "lr": 0.05})
        run.log_metrics({"auc": 0.84, "recall": 0.75})
        run.log_metric("loss", 0.5, step=3)
        run.set_tag("team", "growth")
    info = client.get_run(run.id)
    assert info.status is RunStatus.FINISHED
    assert info.params == {"model": "lgbm", "lr": "0.05"}
    assert info.metrics == {"auc": 0.84, "recall": 0.75, "loss": 0.5}
    assert info.tags == {"team": "growth"} and info.seed == 42
    assert info.environment["packages"]["numpy"] == np.__version__
    assert info.environment_hash and len(info.environment_hash) == 64


def test_failing_block_marks_run_failed(client: Client) -> None:
    with pytest.raises(ZeroDivisionError):
        with client.start_run(experiment="churn") as run:
            1 / 0  # noqa: B018
    assert client.get_run(run.id).status is RunStatus.FAILED


def test_same_errors_on_both_transports(client: Client) -> None:
    with pytest.raises(keel.NotFound):
        client.get_run("0" * 32)
    client.create_experiment("dup")
    with pytest.raises(keel.Conflict):
        client.create_experiment("dup")
    with client.start_run(experiment="dup") as run:
        run.log_param("lr", 0.1)
        with pytest.raises(keel.Conflict):
            run.log_param("lr", 0.2)
        with pytest.raises(keel.BadRequest):
            client.search_runs("dup", "metrics.auc >> 1")
        with pytest.raises(keel.InvalidInput):
            run.log_metric("auc", "high")  # type: ignore[arg-type]


def test_nan_and_infinity_survive_the_wire(client: Client) -> None:
    with client.start_run(experiment="nan") as run:
        run.log_metrics({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
    metrics = client.get_run(run.id).metrics
    assert (
        math.isnan(metrics["nan"]) and metrics["inf"] == math.inf and metrics["ninf"] == -math.inf
    )
    found = client.search_runs("nan", "metrics.inf > 1e300").items
    assert [r.id for r in found] == [run.id]


def test_log_input_registers_dataset_and_links_hash(client: Client, cancer) -> None:
    X, _ = cancer
    with client.start_run(experiment="data") as run:
        run.log_input(X, name="bc-train")
    item = client.get_run(run.id).inputs[0]
    version = client.get_dataset("bc-train")
    assert item.content_hash == version.content_hash and item.dataset_version == 1
    assert item.row_count == len(X) and {c["name"] for c in item.schema_} == set(X.columns)
    pd.testing.assert_frame_equal(client.load_dataset("bc-train", 1), X.reset_index(drop=True))
    assert client.get_dataset_by_hash(version.content_hash[:12]).version == 1


def test_dataset_versions_dedupe_and_increment(client: Client, tmp_path: Path) -> None:
    first = client.register_dataset("t", pd.DataFrame({"a": [1, 2]}))
    again = client.register_dataset("t", pd.DataFrame({"a": [1, 2]}))
    second = client.register_dataset("t", pd.DataFrame({"a": [1, 3]}))
    assert (first.version, again.version, second.version) == (1, 1, 2)
    csv = tmp_path / "t.csv"
    csv.write_text("a\n1\n2\n")
    assert client.register_dataset("t", csv).content_hash == first.content_hash
    assert [v.version for v in client.list_datasets("t")] == [1, 2]
    with pytest.raises(keel.NotFound):
        client.get_dataset("t", 9)


def test_artifacts_file_and_directory(client: Client, tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "d" / "sub" / "b.txt").write_text("B")
    (tmp_path / "one.txt").write_text("one")
    with client.start_run(experiment="art") as run:
        run.log_artifact(tmp_path / "d", "reports")
        run.log_artifact(tmp_path / "one.txt", "notes/one.txt")
    paths = [f.path for f in client.list_artifacts(run.id)]
    assert paths == ["notes/one.txt", "reports/a.txt", "reports/sub/b.txt"]
    out = client.download_artifact(run.id, "reports/sub/b.txt", tmp_path / "out.txt")
    assert out.read_text() == "B"


def test_log_model_register_alias_and_load(client: Client, cancer, fitted) -> None:
    X, _ = cancer
    with client.start_run(experiment="bc") as run:
        version = run.log_model(fitted, registered_name="bc", input_example=X[:5])
    assert version.version == 1 and version.flavor == "sklearn"
    assert [c["name"] for c in version.signature["inputs"]] == list(X.columns)
    client.set_alias("bc", "champion", 1, reason="first")
    loaded = client.load_model("models:/bc@champion")
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), fitted.predict_proba(X))
    assert client.resolve("models:/bc/1").content_hash == version.content_hash
    assert client.resolve("bc").version == 1


def test_the_callers_name_is_recorded_alike_on_both_transports(
    client: Client, cancer, fitted
) -> None:
    """Without auth, the HTTP SDK sends the OS user as the X-Keel-User hint the embedded SDK
    records itself; before, a version or alias move made over HTTP had no author."""
    X, _ = cancer
    with client.start_run(experiment="bc") as run:
        version = run.log_model(fitted, registered_name="who", input_example=X[:3])
    client.set_alias("who", "champion", 1)
    assert version.created_by == getpass.getuser()
    assert [e.actor for e in client.alias_history("who")] == [getpass.getuser()]


def test_alias_history_and_archive(client: Client, cancer, fitted) -> None:
    X, _ = cancer
    with client.start_run(experiment="bc") as run:
        run.log_model(fitted, registered_name="m", input_example=X[:3])
        run.log_model(fitted, "model2", registered_name="m")
    client.set_alias("m", "champion", 1)
    client.set_alias("m", "champion", 2, reason="better")
    client.delete_alias("m", "champion")
    moves = [(e.from_version, e.to_version, e.reason) for e in client.alias_history("m")]
    assert moves == [(None, 1, None), (1, 2, "better"), (2, None, None)]
    client.archive_model_version("m", 1)
    with pytest.raises(keel.Conflict):
        client.set_alias("m", "champion", 1)
    with pytest.raises(keel.NotFound):
        client.load_model("models:/m@champion")
    with pytest.raises(keel.InvalidInput):
        client.set_alias("m", "1bad", 2)


def test_deprecated_version_stays_loadable_and_can_take_an_alias(
    client: Client, cancer, fitted
) -> None:
    X, _ = cancer
    with client.start_run(experiment="bc") as run:
        run.log_model(fitted, registered_name="dep", input_example=X[:3])
    assert client.deprecate_model_version("dep", 1).status is ModelStatus.DEPRECATED
    assert client.get_model_version("dep", 1).status is ModelStatus.DEPRECATED
    client.set_alias("dep", "champion", 1)
    np.testing.assert_array_equal(
        client.load_model("models:/dep@champion").predict(X), fitted.predict(X)
    )
    with pytest.raises(keel.NotFound):
        client.deprecate_model_version("dep", 9)


def test_lineage_reaches_data_code_and_parents(client: Client, cancer, fitted) -> None:
    X, _ = cancer
    with client.start_run(experiment="bc") as run:
        run.log_input(X, name="bc-train")
        run.log_model(fitted, registered_name="lin")
    with client.start_run(experiment="bc") as child:
        child.log_model(fitted, registered_name="lin", parents=["models:/lin/1"])
    lineage = client.lineage("lin", 2)
    assert lineage.run and lineage.run["id"] == child.id
    assert lineage.parents[0].version == 1
    assert lineage.parents[0].datasets[0]["name"] == "bc-train"
    assert lineage.environment_hash == client.get_run(child.id).environment_hash


def test_model_card_and_description(client: Client) -> None:
    client.create_model("carded", description="churn model", card={"intended_use": "retention"})
    updated = client.update_model("carded", card={"caveats": "US only"}, owner="growth")
    assert updated.card.caveats == "US only" and updated.owner == "growth"
    with pytest.raises(keel.InvalidInput):
        client.update_model("carded", status="LIVE")


def test_search_pagination_over_transport(client: Client) -> None:
    for i in range(5):
        with client.start_run(experiment="pages", name=f"r{i}") as run:
            run.log_metric("auc", i / 10)
    page = client.search_runs("pages", "metrics.auc >= 0.1", ["metrics.auc DESC"], max_results=2)
    names = [r.name for r in page]
    page2 = client.search_runs(
        "pages",
        "metrics.auc >= 0.1",
        ["metrics.auc DESC"],
        max_results=2,
        page_token=page.next_token,
    )
    assert names + [r.name for r in page2] == ["r4", "r3", "r2", "r1"]


def test_module_helpers_log_to_the_innermost_run(client: Client) -> None:
    with client.start_run(experiment="fluent") as outer:
        keel.log_param("level", "outer")
        with client.start_run(experiment="fluent") as inner:
            keel.log_metrics({"auc": 0.9})
            keel.set_tag("nested", "yes")
        keel.log_metric("auc", 0.7)
    assert client.get_run(inner.id).metrics == {"auc": 0.9}
    assert client.get_run(inner.id).tags == {"nested": "yes"}
    assert client.get_run(outer.id).metrics == {"auc": 0.7}
    with pytest.raises(keel.KeelError, match="no active run"):
        keel.log_metric("auc", 1.0)


def test_run_handle_answers_reproducibility_as_docs_concepts_shows(client: Client) -> None:
    """#15.24: docs/concepts.md calls ``run.reproducibility()`` on the start_run handle."""
    with client.start_run(experiment="repro") as run:
        run.log_params({"C": 1.0})
        answer = run.reproducibility()
    assert answer == client.get_run(run.id).reproducibility()
    assert answer["reproducible"] is False and "data" in answer["missing"]
