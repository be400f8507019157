"""Save the benchmark's LightGBM booster as an MLflow model (runs in benchmarks/.venv-mlflow).

    .venv-mlflow/bin/python peers/mlflow_serving.py MODEL_TXT OUT_DIR

The booster file is the one keel registered, so both products serve the same trees. The
orchestrator then starts ``mlflow models serve -m OUT_DIR --env-manager local``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


def main() -> None:
    import lightgbm
    import mlflow.lightgbm

    model_txt, out_dir = sys.argv[1], sys.argv[2]
    booster = lightgbm.Booster(model_file=model_txt)
    # pip_requirements given: skips the 7-10 s requirement inference (see BENCHMARKS.md)
    mlflow.lightgbm.save_model(booster, out_dir, pip_requirements=["lightgbm", "pandas<3"])
    print(f"mlflow {mlflow.__version__}: saved {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
