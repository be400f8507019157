"""Drift benchmark: keel's drift detection against Evidently's data-drift preset.

    bash benchmarks/setup_peers.sh               # creates benchmarks/.venv-evidently
    python benchmarks/bench_drift.py             # 10k, 100k and 1M rows x 50 features
    python benchmarks/bench_drift.py --rows 10000,100000   # quicker

Data: 50 features (40 numeric of four distribution families, 10 categorical),
a reference and a current sample of the same size, drift injected into
known columns (``DRIFTED``). Both products read the same parquet files in
their own process (keel here, Evidently in ``benchmarks/.venv-evidently``);
each times only the drift computation and reports its process's peak RSS.
The keel side also recomputes every statistic with scipy (untimed) and
reports the largest difference, and both sides' flags are checked against
the injected truth. Results go to ``benchmarks/results/drift.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EVIDENTLY_PYTHON = HERE / ".venv-evidently" / "bin" / "python"
NUMERIC = [f"num_{i}" for i in range(40)]
CATEGORICAL = [f"cat_{i}" for i in range(10)]
LEVELS = np.array(["a", "b", "c", "d", "e", "f"])
BASE_P = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
#: Columns with injected drift and how: numeric location/scale changes and a
#: categorical mix change, each large enough to matter (≥ 0.25 std moved).
DRIFTED = ["num_0", "num_1", "num_2", "num_3", "cat_0", "cat_1"]
TIMEOUT_S = 1_800


def make_frame(n: int, rng: np.random.Generator, *, drift: bool) -> pd.DataFrame:
    """One sample; with ``drift`` the ``DRIFTED`` columns change distribution."""
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        family = i % 4
        if family == 0:
            x = rng.normal(0.0, 1.0, n)
        elif family == 1:
            x = rng.gamma(2.0, 10.0, n)
        elif family == 2:
            x = rng.poisson(20, n).astype(np.float64)
        else:
            x = rng.uniform(0.0, 100.0, n)
        if drift and name == "num_0":
            x = x + 0.5  # mean shift, 0.5 std
        elif drift and name == "num_1":
            x = x * 1.5  # scale change
        elif drift and name == "num_2":
            x = x + 5.0  # count shift, ~1.1 std
        elif drift and name == "num_3":
            x = np.where(rng.random(n) < 0.3, x + 40.0, x)  # 30% of rows moved
        columns[name] = x
    for name in CATEGORICAL:
        p = np.array([0.1, 0.1, 0.2, 0.2, 0.2, 0.2]) if drift and name in DRIFTED else BASE_P
        columns[name] = LEVELS[rng.choice(LEVELS.size, n, p=p)]
    return pd.DataFrame(columns)


def write_data(n: int, directory: Path) -> None:
    rng = np.random.default_rng(n)
    make_frame(n, rng, drift=False).to_parquet(directory / "reference.parquet")
    make_frame(n, rng, drift=True).to_parquet(directory / "current.parquet")
    spec = {"numeric": NUMERIC, "categorical": CATEGORICAL, "drifted": DRIFTED}
    (directory / "spec.json").write_text(json.dumps(spec))


def keel_child(data_dir: Path) -> None:
    """Run keel's detection in this (fresh) process and print one JSON line."""
    from scipy import stats as sps
    from scipy.spatial import distance

    from keel.monitoring.drift import detect_drift

    reference = pd.read_parquet(data_dir / "reference.parquet")
    current = pd.read_parquet(data_dir / "current.parquet")
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    report = detect_drift(reference, current)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Untimed: recompute each statistic with scipy.
    worst = 0.0
    for item in report.features:
        ref, cur = reference[item.feature], current[item.feature]
        if item.test == "wasserstein":
            expected = sps.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
        elif item.test == "ks":
            expected = sps.ks_2samp(ref, cur).statistic
        elif item.test == "jensen_shannon":
            levels = sorted(set(ref) | set(cur))
            r = ref.value_counts().reindex(levels, fill_value=0).to_numpy(float)
            c = cur.value_counts().reindex(levels, fill_value=0).to_numpy(float)
            expected = distance.jensenshannon(r / r.sum(), c / c.sum(), base=2)
        elif item.test == "chi2":
            levels = sorted(set(ref) | set(cur))
            r = ref.value_counts().reindex(levels, fill_value=0).to_numpy(float)
            c = cur.value_counts().reindex(levels, fill_value=0).to_numpy(float)
            expected = sps.chi2_contingency(np.vstack([r, c]), correction=False).statistic
        else:
            continue
        worst = max(worst, abs(float(expected) - float(item.statistic or 0.0)))
    columns = {
        f.feature: {"method": f.test, "statistic": f.statistic, "drifted": f.drifted}
        for f in report.features
    }
    print(
        json.dumps(
            {
                "seconds": seconds,
                "loaded_rss_mb": loaded_rss,
                "peak_rss_mb": peak,
                "max_abs_diff_vs_scipy": worst,
                "columns": columns,
            }
        )
    )


def run_side(python: Path | str, args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def verdicts(side: dict[str, Any]) -> dict[str, Any]:
    flagged = sorted(c for c, v in side["columns"].items() if v["drifted"])
    return {
        "flagged": flagged,
        "missed": sorted(set(DRIFTED) - set(flagged)),
        "false_alarms": sorted(set(flagged) - set(DRIFTED)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        keel_child(Path(args.child))
        return
    if not EVIDENTLY_PYTHON.exists():
        sys.exit("benchmarks/.venv-evidently is missing: bash benchmarks/setup_peers.sh")
    results = []
    for n in [int(x) for x in args.rows.split(",")]:
        with tempfile.TemporaryDirectory(prefix="keel-drift-") as tmp:
            data_dir = Path(tmp)
            write_data(n, data_dir)
            keel = run_side(sys.executable, [__file__, "--child", str(data_dir)])
            evidently = run_side(
                EVIDENTLY_PYTHON, [str(HERE / "peers" / "evidently_drift.py"), str(data_dir)]
            )
        row = {
            "rows": n,
            "keel_s": keel["seconds"],
            "evidently_s": evidently["seconds"],
            "speedup": evidently["seconds"] / keel["seconds"],
            "keel_peak_rss_mb": keel["peak_rss_mb"],
            "evidently_peak_rss_mb": evidently["peak_rss_mb"],
            "keel_loaded_rss_mb": keel["loaded_rss_mb"],
            "evidently_loaded_rss_mb": evidently["loaded_rss_mb"],
            "keel_max_abs_diff_vs_scipy": keel["max_abs_diff_vs_scipy"],
            "keel": verdicts(keel),
            "evidently": verdicts(evidently),
        }
        results.append(row)
        print(
            f"{n:>9,} rows  keel {row['keel_s']:7.2f} s  evidently {row['evidently_s']:7.2f} s  "
            f"-> {row['speedup']:5.1f}x   peak RSS keel {row['keel_peak_rss_mb']:,.0f} MB / "
            f"evidently {row['evidently_peak_rss_mb']:,.0f} MB   "
            f"scipy diff {row['keel_max_abs_diff_vs_scipy']:.1e}   "
            f"keel missed {row['keel']['missed']} false {row['keel']['false_alarms']}   "
            f"evidently missed {row['evidently']['missed']} false "
            f"{row['evidently']['false_alarms']}",
            flush=True,
        )
    out = HERE / "results" / "drift.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"machine": platform.platform(), "results": results}, indent=2) + "\n"
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
