"""Evidently's data-drift preset on the benchmark's parquet files (runs in .venv-evidently).

    python evidently_drift.py DATA_DIR   ->  one JSON line on stdout

Times only ``Report([DataDriftPreset()], include_tests=True).run(current,
reference)`` after both frames are loaded; peak RSS is the process's maximum.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main(data_dir: Path) -> None:
    spec = json.loads((data_dir / "spec.json").read_text())
    reference = pd.read_parquet(data_dir / "reference.parquet")
    current = pd.read_parquet(data_dir / "current.parquet")
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    definition = DataDefinition(
        numerical_columns=spec["numeric"], categorical_columns=spec["categorical"]
    )
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    seconds = time.perf_counter() - started
    columns = {}
    for metric in result["metrics"]:
        params = metric["config"]
        if params.get("type") == "evidently:metric_v2:ValueDrift":
            value = float(metric["value"])
            columns[params["column"]] = {
                "method": params["method"],
                "statistic": value,
                "drifted": value >= params["threshold"]
                if "distance" in params["method"].lower()
                else value < params["threshold"],
            }
    print(
        json.dumps(
            {
                "seconds": seconds,
                "loaded_rss_mb": loaded_rss,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "columns": columns,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
