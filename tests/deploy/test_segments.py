"""Per-segment arm numbers in every evaluation record (R-DEP-15), over a real log."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from tests.deploy.conftest import Clock, Models
from tests.deploy.test_controller import POLICY, _serve_step

from keel.deploy.service import DeploymentService
from keel.errors import InvalidInput
from keel.services import Services

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_evaluation_records_carry_per_segment_numbers_of_each_arm(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    policy = {**POLICY, "analysis": {"segments": ["tenure", "monthly_charges"]}}
    service.create(policy, actor="ana")
    rows = churn_rows[1].iloc[:1200]
    _serve_step(services, models, rows, clock)
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    segments = record.details["numbers"]["segments"]
    assert set(segments) == {"tenure", "monthly_charges"}
    tenure = segments["tenure"]
    assert 0 < len(tenure["values"]) <= 20
    logged = sum(a["n"] for v in tenure["values"] for a in v["arms"].values())
    assert logged + tenure["other_values"] == len(rows)
    first = tenure["values"][0]
    assert set(first["arms"]) == {"primary", "canary"}
    # the most frequent tenure values hold both classes: an AUC per arm
    aucs = [
        a["metric"]["value"] for v in tenure["values"] for a in v["arms"].values() if a["metric"]
    ]
    assert aucs and all(0.0 <= auc <= 1.0 for auc in aucs)
    assert all(
        a["metric"] is None or a["metric"]["name"] == "roc_auc" for a in first["arms"].values()
    )


def test_a_segment_that_is_not_a_model_input_is_refused_naming_it(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    register_churn("weak", "good")
    policy = {**POLICY, "analysis": {"segments": ["tenure", "tenur"]}}
    with pytest.raises(InvalidInput, match=r"analysis\.segments\[1\]: 'tenur'") as caught:
        clocked[0].create(policy, actor="ana")
    assert caught.value.field == "analysis.segments[1]"
    assert services.deployments.list() == []
