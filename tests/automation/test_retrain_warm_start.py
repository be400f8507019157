"""R-TRN-26 fine-tune vs from scratch: ``warm_start: true`` passes the champion's loaded
model to a train function that accepts ``champion``; one that does not is refused at
enqueue naming the key; without a champion the train function gets ``None``."""

from __future__ import annotations

import numpy as np
import pytest
import tests.automation.retrain_warm as user_code
from tests.automation.test_retrain import (  # noqa: F401
    TRAIN,
    churn,
    logged,
    register_champion,
    run_job,
    spec,
    svc,
)

from keel.automation.retrain.spec import accepts_champion, parse_job_args
from keel.errors import InvalidInput
from keel.services import Services

WARM = "tests.automation.retrain_warm:warm"


def test_the_champion_is_passed_to_a_warm_start(logged: Services) -> None:  # noqa: F811
    user_code.CHAMPIONS.clear()
    champion = logged.registry.get_version("churn", 1)
    job = run_job(logged, {"model": "churn", "retrain": spec(train=WARM, warm_start=True)})
    assert job.status == "succeeded", job.traceback
    [given] = user_code.CHAMPIONS
    # the loaded champion itself: its coefficients are the registered v1's
    expected = logged.monitors.load_model(champion).native
    np.testing.assert_allclose(
        given.named_steps["logisticregression"].coef_,
        expected.named_steps["logisticregression"].coef_,
    )
    [decision] = logged.decisions.query(model="churn", kind="retraining")
    assert decision.details["warm_start"] == {"from_version": 1}
    run = logged.tracking.get_run(job.result["run_id"])
    assert run.params["warm_start"] in ("True", True)


def test_without_warm_start_the_function_gets_two_arguments(logged: Services) -> None:  # noqa: F811
    user_code.CHAMPIONS.clear()
    job = run_job(logged, {"model": "churn", "retrain": spec(train=WARM)})
    assert job.status == "succeeded", job.traceback
    assert user_code.CHAMPIONS == [None]  # the default of its champion parameter
    [decision] = logged.decisions.query(model="churn", kind="retraining")
    assert decision.details["warm_start"] is None


def test_a_train_function_without_champion_is_refused_naming_the_key() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_args({"model": "churn", "retrain": {"train": TRAIN, "warm_start": True}})
    assert caught.value.field == "args.retrain.warm_start"
    assert "takes no 'champion' argument" in caught.value.message
    assert accepts_champion(user_code.warm) and not accepts_champion(lambda f, p: None)
    assert accepts_champion(lambda f, p, **kw: None)
