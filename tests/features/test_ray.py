"""``engine="ray"``: the same answer as the in-process engine, from tasks on a real local Ray."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.features.conftest import IN_CI, Seed
from tests.features.test_offline import assert_same, entity_rows, reference

import keel
from keel.errors import Unavailable
from keel.executors.ray_backend import RayExecutor
from keel.features import FeatureStore, _ray

FEATURES = ["customer_account:*", "customer_usage:*"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray on two CPUs for this module; shut down afterwards."""
    try:
        import ray
    except ImportError:
        if IN_CI:
            pytest.fail("Ray is not installed: the dev extra includes it")
        pytest.skip("Ray is not installed (pip install 'keelml[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_equals_local_engine(
    ray_cluster: None, lite_fs: FeatureStore, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ray, "CHUNK_ROWS", 400)  # several tasks for 3,000 rows
    entity = entity_rows(3_000, 60)
    entity["row"] = np.arange(len(entity))
    local = lite_fs.get_historical_features(entity, FEATURES, engine="local")
    remote = lite_fs.get_historical_features(entity, FEATURES, engine="ray")
    pd.testing.assert_frame_equal(remote, local)
    assert_same(remote, reference(entity, seed.usage, ["customer_id"], ["calls_last_30d"], 21600))
    assert remote["tenure_days"].notna().sum() > 1_000
    keys = {"customer_id": pa.chunked_array([entity["customer_id"].to_numpy()])}
    ids = _ray.chunk_ids(keys, 8)
    assert len(set(ids.tolist())) == 8  # the keys really spread over the chunks
    one_customer = entity["customer_id"] == entity["customer_id"].iloc[0]
    assert len(set(ids[one_customer.to_numpy()].tolist())) == 1  # an entity stays in one


def test_engine_from_settings(
    ray_cluster: None, lite_fs: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    calls: list[int] = []
    real = _ray.ray_positions
    monkeypatch.setattr(_ray, "ray_positions", lambda *a, **k: calls.append(1) or real(*a, **k))
    configured = lite_fs.settings
    lite_fs.settings = configured.model_copy(update={"features_engine": "ray"})
    entity = entity_rows(200, 50)
    result = lite_fs.get_historical_features(entity, ["customer_usage:calls_last_30d"])
    assert calls == [1] and ray.is_initialized()
    lite_fs.settings = configured
    local = lite_fs.get_historical_features(entity, ["customer_usage:calls_last_30d"])
    pd.testing.assert_frame_equal(result, local)
    assert calls == [1]


def test_missing_ray_is_a_clear_error(
    lite_fs: FeatureStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(Unavailable) as caught:
        lite_fs.get_historical_features(entity_rows(5, 5), FEATURES, engine="ray")
    assert caught.value.field == "engine"
    assert "pip install 'keelml[ray]'" in str(caught.value)


def test_one_ray_start_up_for_the_engine_and_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    # keel.executors.ray_backend.connect_ray is the only place that starts Ray; each
    # caller's error still names its own setting and field.
    src = Path(keel.__file__).parent
    starts = [str(p.relative_to(src)) for p in src.rglob("*.py") if _calls_ray_init(p)]
    assert starts == ["executors/ray_backend.py"]
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(Unavailable) as caught:
        RayExecutor()
    assert caught.value.field == "executor" and "KEEL_EXECUTOR=ray needs Ray" in str(caught.value)


def _calls_ray_init(path: Path) -> bool:
    """Whether the code (not a docstring) of ``path`` calls ``ray.init``."""
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "init"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "ray"
        for node in ast.walk(ast.parse(path.read_text()))
    )
