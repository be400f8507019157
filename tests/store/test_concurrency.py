"""Concurrent writers: version numbers stay dense and unique, no write is lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from keel.services import Services


def _log_model_files(services: Services, run_id: str, tmp_path: Path) -> None:
    directory = tmp_path / run_id
    directory.mkdir()
    (directory / "keel_model.json").write_text('{"flavor": "pyfunc"}')
    services.tracking.log_artifact_dir(run_id, directory, "model")


def test_concurrent_version_creation_is_dense(services: Services, tmp_path: Path) -> None:
    runs = [services.tracking.create_run("c") for _ in range(8)]
    for run in runs:
        _log_model_files(services, run.id, tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(
            pool.map(lambda r: services.registry.create_version("m", r.id).version, runs)
        )
    assert sorted(versions) == list(range(1, 9))


def test_concurrent_metric_writes_all_land(services: Services) -> None:
    run = services.tracking.create_run("c")

    def write(worker: int) -> None:
        for step in range(25):
            services.tracking.log_metric(run.id, f"w{worker}", float(step), step=step)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(4)))
    for worker in range(4):
        history = services.tracking.metric_history(run.id, f"w{worker}")
        assert [m.value for m in history] == [float(s) for s in range(25)]
    assert services.tracking.get_run(run.id).metrics == {f"w{i}": 24.0 for i in range(4)}
