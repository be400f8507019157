"""A slow train function for the worker-kill acceptance test: imported by path
(``acceptance_train:slow``) in the test process and in a `keel worker` subprocess that has
this folder on PYTHONPATH, so each search trial takes long enough to kill the worker between
checkpoints."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from retrain_train import train  # this folder is on the path (see the module docstring)

#: Seconds each call sleeps before training.
SLEEP_S = 1.5


def slow(frame: pd.DataFrame, params: dict[str, Any]) -> Any:
    """``retrain_train.train`` after a pause (a long fit, in miniature)."""
    time.sleep(SLEEP_S)
    return train(frame, params)
