"""End to end: a model a feature service feeds is served by a live gateway (online features
fetched by entity), its predictions are labelled through feedback, and retrain.run trains
on the same feature values serving used — the point-in-time join from the offline store
gives, for each logged prediction, exactly the value the gateway fetched and logged."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from tests.automation.conftest import drain
from tests.automation.test_retrain import QUIET_GATES
from tests.serving.test_feature_serving import FETCHED, REQUEST, serving

from keel.automation.retrain.data import TS_COLUMN
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.services import open_services
from keel.serving import predictions

pytestmark = pytest.mark.slow  # a live gateway, ~20 s
TRAIN = "tests.automation.retrain_features_train:train"
ROWS = 160


def test_retraining_sees_the_features_the_gateway_served(tmp_path: Path) -> None:
    register_retrain_kind()
    with serving(tmp_path) as served:
        rng = np.random.default_rng(23)
        customers = rng.integers(0, 300, ROWS)
        minutes = np.arange(ROWS) + 0.5  # unique: they identify each row below
        ids = []
        for customer, minute in zip(customers, minutes, strict=True):
            body = {"instances": [{"customer_id": int(customer), REQUEST: float(minute)}]}
            answer = served.predict(body)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            logged = predictions(served.name, 1, settings=served.settings).to_pandas()
            if len(logged) >= ROWS:
                break
            time.sleep(0.1)
        assert len(logged) == ROWS and logged["entity_key"].notna().all()

        services = open_services(served.settings)
        try:
            labels = rng.integers(0, 2, ROWS)
            services.feedback.submit(
                [{"request_id": r, "label": int(y)} for r, y in zip(ids, labels, strict=True)]
            )
            spec = {"train": TRAIN, "label": "churn", "window": "1d", "gates": QUIET_GATES}
            job = services.jobs.enqueue(
                "retrain.run", {"model": served.name, "retrain": spec}, max_retries=0
            )
            drain(services.jobs)
            job = services.jobs.get(job.id)
            assert job.status == "succeeded", job.traceback
            run = services.tracking.get_run(job.result["run_id"])
            name = f"retrain-{served.name}"
            frame = services.datasets.load(name, run.inputs[0].dataset_version)
            [retraining] = services.decisions.query(model=served.name, kind="retraining")
        finally:
            services.close()

    assert list(frame.columns) == [REQUEST, *FETCHED, "churn", TS_COLUMN]
    # the three columns came from the feature store's join, not from the log's copy …
    assert len(frame) == ROWS and retraining.details["feature_store_columns"] == 3
    trained = frame.set_index(REQUEST).sort_index()
    served_rows = logged.set_index(f"f_{REQUEST}").sort_index()
    # … and equal, row by row, what the gateway fetched online and logged
    for feature in FETCHED:
        np.testing.assert_allclose(
            trained[feature].to_numpy(dtype=float),
            served_rows[f"f_{feature}"].to_numpy(dtype=float),
            err_msg=feature,
        )
