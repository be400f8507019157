"""A scikit-learn model uploaded as a run's plain artifacts (not through log_model, which
checks what loads) is refused at registration when its skops file names types keel would
not load: before, it was registered and refused only when a gateway loaded it. Both SDK
transports, SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from keel.client import Client
from keel.errors import InvalidInput, NotFound
from keel.registry.flavors.sklearn import SKOPS_FILE
from keel.registry.packaging import save_model_dir


def _halve(values: np.ndarray) -> np.ndarray:
    return values / 2


def _fitted() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    return X, (X[:, 0] > 0).astype(int)


def test_an_uploaded_model_keel_would_not_load_is_not_registered(
    client: Client, tmp_path: Path
) -> None:
    X, y = _fitted()
    directory = tmp_path / "model"
    save_model_dir(LogisticRegression().fit(X, y), directory)  # keel_model.json and all
    crafted = make_pipeline(FunctionTransformer(_halve), LogisticRegression()).fit(X, y)
    skops.io.dump(crafted, directory / SKOPS_FILE)  # then the file swapped for another
    run = client.start_run(experiment="uploads")
    client.log_artifact(run.id, directory, "model")

    with pytest.raises(InvalidInput, match="does not trust") as refused:
        client.register_model("uploaded", run.id, "model")

    assert refused.value.field == "artifact_path"
    assert "model/model.skops" in refused.value.message
    assert any(name.endswith("_halve") for name in refused.value.detail["untrusted_types"])
    with pytest.raises(NotFound):
        client.get_model_version("uploaded", 1)  # nothing half-registered
    # the same upload of a model keel loads registers
    save_model_dir(LogisticRegression().fit(X, y), tmp_path / "good")
    client.log_artifact(run.id, tmp_path / "good", "good")
    assert client.register_model("uploaded", run.id, "good").version == 1
