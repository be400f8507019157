"""Retraining pipelines: the user's train function on the prediction log + feedback,
time-split, optionally decay-weighted and Optuna-searched, registered with lineage, gated
and promoted (``retrain.run`` jobs; docs/automation.md#retraining).

Importing the package registers the ``retrain.run`` job kind.
"""

from keel.automation.retrain.pipeline import job_key, run_retrain
from keel.automation.retrain.promotion import STAGES, approve, reject
from keel.automation.retrain.spec import RetrainSpec, load_train_function, parse_job_args

__all__ = [
    "STAGES",
    "RetrainSpec",
    "approve",
    "job_key",
    "load_train_function",
    "parse_job_args",
    "reject",
    "run_retrain",
]
