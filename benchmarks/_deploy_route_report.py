"""Ratios, targets and the printed report of ``bench_deploy_route.py``.

Every route is compared with the alias route (the issue's targets). The ``two_versions``
route (``--decompose``: a pass on a server of its own) serves the same two versions,
split between the same requests as ``churn-ab``'s arms, through their plain version
routes (no deployment: no arm pick, no shared cycle, no bulkhead), so
``two_arms_vs_two_versions`` is what the deployment layer itself costs, and
``two_versions_vs_alias`` what serving two models instead of one costs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "deploy_route.json"
ROUTES = ("alias", "two_arms", "canary", "shadow")
#: The ``--decompose`` pass, on a server of its own: another route loaded beside the
#: targets' four would change their figures (its batchers and buffers stay in the heap:
#: the two-arm and canary ratios read 3-5 % lower with it there).
DECOMPOSED = ("alias", "two_arms", "two_versions")
ALL_ROUTES = ROUTES + ("two_versions",)
#: Routes compared with the alias route, and the p99 ratio each must stay within.
P99_TARGETS = {"two_arms": 1.1, "canary": 1.1, "shadow": 1.2}
#: Share of the alias route's saturated throughput offered in the fixed-rate rounds.
RATE_SHARE = 0.6
#: Ratios between two non-alias routes: (route, baseline).
PAIRS = (("two_arms", "two_versions"),)


def ratios_of(rounds: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    """Median per-round ratios of each route to the alias route (throughput, p99, CPU)."""
    ratios: dict[str, float] = {}
    if not rounds:
        return ratios

    def median(f: Any) -> float:
        return statistics.median(f(r) for r in rounds)

    pairs = [(route, "alias") for route in ALL_ROUTES[1:]] + list(PAIRS)
    for route, base in pairs:
        if not all(route in r and base in r for r in rounds):
            continue
        for figure, key in (("rps", "rps"), ("p99", "p99_ms")):
            ratios[f"{prefix}_{route}_vs_{base}_{figure}"] = median(
                lambda r, route=route, base=base, key=key: r[route][key] / r[base][key]
            )
        if all("cpu_us_per_request" in r[x] for r in rounds for x in (base, route)):
            ratios[f"{prefix}_{route}_vs_{base}_cpu_per_request"] = median(
                lambda r, route=route, base=base: (
                    r[route]["cpu_us_per_request"] / r[base]["cpu_us_per_request"]
                )
            )
    return ratios


def report(results: dict[str, Any], args: argparse.Namespace, pinning: str, use_wrk: bool) -> None:
    """Write ``RESULTS`` and print every round, ratio and target."""
    ratios: dict[str, float] = {}
    targets: dict[str, bool] = {}
    for workload, rounds in results.items():
        saturated = [r for r in rounds if "alias" in r]
        fixed = [r["fixed_rate"] for r in rounds if "fixed_rate" in r]
        ratios.update(ratios_of(saturated, workload))
        ratios.update(ratios_of(fixed, f"{workload}_fixed_rate"))
        for route in ("two_arms", "canary"):  # throughput: the saturated server's capacity
            name = f"{workload}_{route}_vs_alias_rps"
            if name in ratios and workload != "decomposed":
                targets[f"{name} >= 0.9"] = ratios[name] >= 0.9
        for prefix in (workload, f"{workload}_fixed_rate"):
            for route, bound in P99_TARGETS.items():
                name = f"{prefix}_{route}_vs_alias_p99"
                if name in ratios and workload != "decomposed":
                    targets[f"{name} <= {bound}"] = ratios[name] <= bound
    payload = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg": os.getloadavg(),
        },
        "load_generator": "wrk -t2 -c16" if use_wrk else "python asyncio+httpx, 16 workers",
        "fixed_rate": f"fixed_rate.py, {RATE_SHARE:.0%} of the alias route's saturated rps",
        "cpu_pinning": pinning,
        "rounds": args.rounds,
        "round_seconds": args.round_seconds,
        "rate_rounds": args.rate_rounds,
        "rate_seconds": args.rate_seconds,
        "results": results,
        "ratios": ratios,
        "targets_met": targets,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    for workload, rounds in results.items():
        loads = [("", r) for r in rounds if "alias" in r]
        loads += [(" fixed rate", r["fixed_rate"]) for r in rounds if "fixed_rate" in r]
        for n, (kind, r) in enumerate(loads):
            print(
                f"{workload}{kind} round {n + 1}: "
                + ", ".join(
                    f"{route} {r[route]['rps']:.0f} req/s p99 {r[route]['p99_ms']:.2f} ms"
                    f" cpu {r[route].get('cpu_us_per_request', float('nan')):.0f} us/req"
                    for route in ALL_ROUTES
                    if route in r
                )
            )
        for r in rounds:
            for key in ("shadow_counts", "shadow_counts_after_fixed_rate"):
                if key in r:
                    print(f"{workload} {key}: {r[key]}")
    for name, value in ratios.items():
        print(f"{name}: {value:.3f}")
    for name, met in targets.items():
        print(f"{'✓' if met else '✗'} {name}")
    print(f"written to {RESULTS.relative_to(HERE.parent)}")
