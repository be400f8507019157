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
"$venv/bin/python" -m pip install --quiet "mlflow>=3,<4" "pandas<3" "lightgbm>=4.3"

# wrk: the HTTP load generator of the serving benchmark (Debian package; skipped when apt-get
# is missing or we are not root, and bench_serving.py then falls back to its Python client).
if ! command -v wrk >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == "0" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
      || echo "warning: could not install wrk" >&2
  else
    echo "note: wrk not installed (needs apt-get as root)" >&2
  fi
fi

# Smoke check: import the client and the SQL store, print the version.
MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 "$venv/bin/python" - <<'PY'
import mlflow
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: F401
from mlflow.tracking import MlflowClient  # noqa: F401
print(f"mlflow {mlflow.__version__} ready in benchmarks/.venv-mlflow")
PY

# Feast 0.67 for bench_features.py, in its own venv: the local provider (SQLite online store,
# file/dask offline store) plus feast[duckdb] for its DuckDB offline store; pandas<3 as above.
feast_venv="$here/.venv-feast"
if [[ "${FORCE:-0}" == "1" && -d "$feast_venv" ]]; then
  rm -rf "$feast_venv"
fi
if [[ ! -x "$feast_venv/bin/python" ]]; then
  "$python" -m venv "$feast_venv"
fi
"$feast_venv/bin/python" -m pip install --quiet --upgrade pip
"$feast_venv/bin/python" -m pip install --quiet "feast[duckdb]==0.67.*" "pandas<3"
"$feast_venv/bin/python" -c "import feast; print(f'feast {feast.__version__} ready in benchmarks/.venv-feast')"

# Evidently 0.7 for bench_drift.py, in its own venv; `import evidently` fails with pandas 3.
evidently_venv="$here/.venv-evidently"
if [[ "${FORCE:-0}" == "1" && -d "$evidently_venv" ]]; then
  rm -rf "$evidently_venv"
fi
if [[ ! -x "$evidently_venv/bin/python" ]]; then
  "$python" -m venv "$evidently_venv"
fi
"$evidently_venv/bin/python" -m pip install --quiet --upgrade pip
"$evidently_venv/bin/python" -m pip install --quiet "evidently>=0.7,<0.8" "pandas<3" pyarrow
"$evidently_venv/bin/python" -c "import evidently; print(f'evidently {evidently.__version__} ready in benchmarks/.venv-evidently')"
