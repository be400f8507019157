"""Train functions of the warm-start test (imported by path, R-TRN-26)."""

from __future__ import annotations

import copy
from typing import Any

import pandas as pd
import tests.automation.retrain_train as cold

#: The ``champion`` each call of ``warm`` received (inline executor only).
CHAMPIONS: list[Any] = []


def warm(frame: pd.DataFrame, params: dict[str, Any], champion: Any = None) -> Any:
    """Fine-tune the champion's logistic regression from its coefficients when there is
    one (sklearn ``warm_start``); from scratch otherwise."""
    CHAMPIONS.append(champion)
    if champion is None:
        return cold.train(frame, params)
    model = copy.deepcopy(champion)
    model.set_params(logisticregression__warm_start=True, logisticregression__max_iter=50)
    return model.fit(frame.drop(columns=[cold.LABEL]), frame[cold.LABEL])
