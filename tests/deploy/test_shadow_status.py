"""The shadow comparison in a deployment's status, from a constructed prediction log:
agreement, PSI/KS and latency checked against numpy/scipy, shadow errors, per-replica
queue drops, and the same numbers over REST, the SDK and ``keel deploy show``."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from tests.conftest import serve_in_thread
from tests.deploy.conftest import FEATURES, POLICY, START_MS, Clock, Models
from typer.testing import CliRunner

from keel.api import create_app
from keel.cli.main import app as cli
from keel.client import Client
from keel.deploy.service import DeploymentService
from keel.services import Services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

SHADOW_POLICY: dict[str, Any] = {
    "name": "churn-shadow",
    "model": "churn",
    "strategy": "shadow",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "shadow"}],
}
_ids = itertools.count()


def _log(
    services: Services,
    *,
    n_requests: int,
    rows_per_request: int,
    classifier: bool,
    failed_every: int = 0,
) -> dict[str, np.ndarray[Any, Any]]:
    """Log primary rows and the shadow's copies (same request ids, same row order); every
    ``failed_every``-th shadow request failed. Returns the expected paired arrays."""
    rng = np.random.default_rng(7)
    n = n_requests * rows_per_request
    p_score = rng.uniform(0, 1, n)
    s_score = np.clip(p_score + rng.normal(0, 0.15, n), 0, 1)
    if not classifier:
        p_score, s_score = p_score * 100, p_score * 100 * (1 + rng.normal(0, 0.012, n))
    p_lat, s_lat = rng.gamma(2, 3, n), rng.gamma(2, 6, n)
    answered = np.ones(n, dtype=bool)
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for r in range(n_requests):
            request_id = f"req-{next(_ids)}"
            failed = failed_every > 0 and r % failed_every == 0
            rows = range(r * rows_per_request, (r + 1) * rows_per_request)
            for arm, score, lat in (("primary", p_score, p_lat), ("shadow", s_score, s_lat)):
                for i in rows:
                    error = arm == "shadow" and failed
                    answered[i] = answered[i] and not error
                    output: Any = (
                        None if error else int(score[i] >= 0.5) if classifier else float(score[i])
                    )
                    log.append(
                        PredictionRecord(
                            request_id=request_id,
                            at_ms=START_MS + 1 + r,
                            model="churn",
                            version=1 if arm == "primary" else 2,
                            features={"tenure": float(i)},
                            output=output,
                            probabilities=[1 - score[i], score[i]]
                            if classifier and not error
                            else None,
                            latency_ms=float(lat[i]),
                            deployment="churn-shadow",
                            arm=arm,
                            extra={"error": "exploded"} if error else {},
                        )
                    )
        assert log.flush()
    keep = answered
    return {
        "p": p_score[keep],
        "s": s_score[keep],
        "p_lat": p_lat[keep],
        "s_lat": s_lat[keep],
        "errors": np.array((~answered).sum()),
    }


def _psi(reference: np.ndarray[Any, Any], current: np.ndarray[Any, Any]) -> float:
    """PSI as documented: deciles of the reference, outer bins open, empty cells 1e-4."""
    edges = np.unique(np.quantile(np.sort(reference), np.linspace(0, 1, 11)[1:-1]))
    cells = [
        np.bincount(np.searchsorted(edges, x), minlength=edges.size + 1)
        for x in (reference, current)
    ]
    r, c = (np.maximum(k / k.sum(), 1e-4) for k in cells)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.fixture
def shadowed(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> DeploymentService:
    service, clock = clocked
    register_churn("good", "weak")
    service.create(SHADOW_POLICY, actor="ana")
    clock.now += 60_000
    return service


def test_classifier_comparison_matches_numpy_and_scipy(
    services: Services, shadowed: DeploymentService
) -> None:
    want = _log(services, n_requests=300, rows_per_request=3, classifier=True, failed_every=10)
    found = shadowed.get("churn-shadow").shadow_comparison
    assert found is not None and set(found) == {"shadow"}
    got = found["shadow"]
    assert got["kind"] == "classifier" and got["version"] == 2
    assert got["pairs"] == len(want["p"]) == 810 and got["errors"] == 90
    assert got["error_rate"] == pytest.approx(90 / 900, abs=1e-12)
    same = (want["p"] >= 0.5) == (want["s"] >= 0.5)
    assert got["agreement"] == pytest.approx(same.mean(), abs=1e-12)
    assert 0.5 < got["agreement"] < 1  # the noise flips some labels: a real comparison
    shift = got["distribution"]
    assert shift["on"] == "probability"
    reference = sps.ks_2samp(want["p"], want["s"])
    assert shift["ks"] == pytest.approx(reference.statistic, abs=1e-9)
    assert shift["ks_pvalue"] == pytest.approx(reference.pvalue, rel=1e-6)
    assert shift["psi"] == pytest.approx(_psi(want["p"], want["s"]), abs=1e-9)
    latency = got["latency_ms"]
    for side, key in (("primary", "p_lat"), ("shadow", "s_lat")):
        assert latency[side]["p50"] == pytest.approx(np.percentile(want[key], 50), abs=1e-9)
        assert latency[side]["p99"] == pytest.approx(np.percentile(want[key], 99), abs=1e-9)
    assert latency["p99_ratio"] == pytest.approx(
        np.percentile(want["s_lat"], 99) / np.percentile(want["p_lat"], 99), abs=1e-9
    )
    assert got["drops"] == {"total": 0, "by_replica": {}}


def test_regressor_agreement_is_within_the_tolerance(
    services: Services, shadowed: DeploymentService
) -> None:
    want = _log(services, n_requests=400, rows_per_request=1, classifier=False)
    got = shadowed.get("churn-shadow").shadow_comparison["shadow"]  # type: ignore[index]
    assert got["kind"] == "regressor" and got["tolerance"] == {"rtol": 0.01, "atol": 1e-8}
    close = np.isclose(want["s"], want["p"], rtol=0.01, atol=1e-8)
    assert 0.3 < close.mean() < 0.9
    assert got["agreement"] == pytest.approx(close.mean(), abs=1e-12)
    assert got["distribution"]["on"] == "output"
    reference = sps.ks_2samp(want["p"], want["s"])
    assert got["distribution"]["ks"] == pytest.approx(reference.statistic, abs=1e-9)
    assert got["distribution"]["psi"] == pytest.approx(_psi(want["p"], want["s"]), abs=1e-9)


def test_text_labels_compare_by_label_and_psi_over_labels(
    services: Services, shadowed: DeploymentService
) -> None:
    rng = np.random.default_rng(3)
    primary = rng.choice(["no", "yes"], size=300, p=[0.7, 0.3])
    shadow = np.where(rng.random(300) < 0.2, rng.choice(["no", "yes", "maybe"], 300), primary)
    with PredictionLog(log_root(services.settings), flush_interval_s=0.05, fsync=False) as log:
        for i in range(300):
            for arm, output in (("primary", primary[i]), ("shadow", shadow[i])):
                log.append(
                    PredictionRecord(
                        request_id=f"text-{i}",
                        at_ms=START_MS + 1 + i,
                        model="churn",
                        version=1 if arm == "primary" else 2,
                        features={"tenure": 1.0},
                        output=str(output),
                        latency_ms=1.0,
                        deployment="churn-shadow",
                        arm=arm,
                    )
                )
        assert log.flush()
    got = shadowed.get("churn-shadow").shadow_comparison["shadow"]  # type: ignore[index]
    assert got["kind"] == "classifier" and got["pairs"] == 300
    assert got["agreement"] == pytest.approx(np.mean(primary == shadow), abs=1e-12)
    levels = ["no", "yes", "maybe"]
    r, c = (
        np.maximum(np.array([np.sum(x == v) for v in levels]) / 300, 1e-4)
        for x in (primary, shadow)
    )
    r, c = r / r.sum(), c / c.sum()
    assert got["distribution"]["on"] == "label" and got["distribution"]["ks"] is None
    assert got["distribution"]["psi"] == pytest.approx(np.sum((c - r) * np.log(c / r)), abs=1e-9)


def test_no_traffic_yet_and_drops_per_replica(shadowed: DeploymentService) -> None:
    got = shadowed.get("churn-shadow").shadow_comparison["shadow"]  # type: ignore[index]
    assert got["pairs"] == 0 and got["agreement"] is None and got["error_rate"] is None
    counts = {"a": {"shadow:dropped": 7, "shadow:answered": 93}, "b": {"shadow:dropped": 3}}
    for replica, numbers in counts.items():
        shadowed.add_shadow_source(replica, lambda name, numbers=numbers: numbers)
        current = shadowed.get("churn-shadow")
        shadowed.report_replica("churn-shadow", replica, current.version, current.weights)
    found = shadowed.get("churn-shadow")
    assert {r.replica: r.shadow for r in found.replicas} == counts
    assert found.shadow_comparison["shadow"]["drops"] == {  # type: ignore[index]
        "total": 10,
        "by_replica": {"a": 7, "b": 3},
    }


def test_canary_without_a_shadow_phase_has_no_comparison(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    services.deployments.create(POLICY, actor="ana")
    assert services.deployments.get("churn-live").shadow_comparison is None


def test_rest_sdk_and_cli_show_the_same_comparison(
    services: Services, shadowed: DeploymentService, live_server: str
) -> None:
    _log(services, n_requests=50, rows_per_request=2, classifier=True, failed_every=5)
    local = shadowed.get("churn-shadow").shadow_comparison
    rest = httpx.get(f"{live_server}/v1/deployments/churn-shadow")
    assert rest.status_code == 200 and rest.json()["shadow_comparison"] == local
    remote = Client(live_server, settings=services.settings)
    try:
        assert remote.get_deployment("churn-shadow").shadow_comparison == local
    finally:
        remote.close()
    runner = CliRunner()
    shown = runner.invoke(
        cli, ["deploy", "show", "churn-shadow", "--server", live_server, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["shadow_comparison"] == local
    human = runner.invoke(cli, ["deploy", "show", "churn-shadow", "--server", live_server])
    assert human.exit_code == 0, human.output
    assert f"agreement {local['shadow']['agreement']:.3f}" in human.output  # type: ignore[index]


def test_a_gateways_dropped_copies_reach_the_status_through_its_report(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    register_churn("good", "weak")
    services.deployments.create({**SHADOW_POLICY, "shadow": {"queue_size": 1}}, actor="ana")
    row = {f: float(v) for f, v in churn_rows[1][FEATURES].iloc[0].items()}
    app = create_app(services=services)
    with serve_in_thread(app) as url:

        def burst(worker: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                for i in range(40):
                    body = {"instances": [row], "routing_key": f"u{worker}-{i}"}
                    got = http.post("/v1/deployments/churn-shadow/predict", json=body)
                    assert got.status_code == 200, got.text

        threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gateway = app.state.gateway
        dropped = gateway.shadows.counts_of("churn-shadow").get("shadow:dropped", 0)
        # the periodic report (every 15 s for an unfinished deployment), due now
        asyncio.run(gateway.routes.report(now_s=time.monotonic() + 3600))
        status = httpx.get(f"{url}/v1/deployments/churn-shadow").json()
    assert dropped > 0
    drops = status["shadow_comparison"]["shadow"]["drops"]
    assert drops == {"total": dropped, "by_replica": {gateway.id: dropped}}
    assert status["replicas"][0]["shadow"]["shadow:dropped"] == dropped


def test_a_corrupt_log_segment_degrades_the_comparison_never_a_500(
    services: Services, shadowed: DeploymentService, live_server: str
) -> None:
    _log(services, n_requests=20, rows_per_request=1, classifier=True)
    segment = next(log_root(services.settings).rglob("*.parquet"))
    # Parquet's magic at both ends (so the cheap torn-file check passes), garbage between.
    (segment.parent / "zz-corrupt.parquet").write_bytes(b"PAR1" + b"\x07" * 64 + b"PAR1")
    rest = httpx.get(f"{live_server}/v1/deployments/churn-shadow")
    assert rest.status_code == 200, rest.text
    got = rest.json()["shadow_comparison"]["shadow"]
    assert "prediction log unreadable" in got["error"] and "pairs" not in got
    assert got["version"] == 2 and got["drops"]["total"] == 0
    assert rest.json()["status"]  # the rest of the status is still there
    shown = CliRunner().invoke(cli, ["deploy", "show", "churn-shadow", "--server", live_server])
    assert shown.exit_code == 0, shown.output
    assert "shadow shadow: comparison unavailable: prediction log unreadable" in shown.output
