#!/usr/bin/env bash
# Create the peer virtualenv(s) used by the benchmarks.  MLflow never goes
# into keel's own environment: it lives in benchmarks/.venv-mlflow.
#
#   bash benchmarks/setup_peers.sh          # create or reuse
#   FORCE=1 bash benchmarks/setup_peers.sh  # recreate from scratch
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-mlflow"
python="${PYTHON:-python3}"

if [[ "${FORCE:-0}" == "1" && -d "$venv" ]]; then
  rm -rf "$venv"
fi

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
# pandas 3 breaks several peers; MLflow 3 is pinned to its major version.
"$venv/bin/python" -m pip install --quiet "mlflow>=3,<4" "pandas<3"

# Smoke check: import the client and the SQL store, print the version.
MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 "$venv/bin/python" - <<'PY'
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: F401
from mlflow.tracking import MlflowClient  # noqa: F401
print(f"mlflow {mlflow.__version__} ready in benchmarks/.venv-mlflow")
PY
