"""Exploration's cost on the gateway (R-TRN-24): the serving path with exploration off must
not be slower than before it existed; with it on, the price of a hash per answer.

    python benchmarks/bench_exploration.py                      # this tree: off, then on
    git worktree add --detach /tmp/without HEAD && git -C /tmp/without revert --no-commit C
    PYTHONPATH=/tmp/without/src python benchmarks/bench_exploration.py --label without --no-policy

In-process, no HTTP (what the gateway adds, not the network): one LightGBM churn
classifier (100 trees) registered in a scratch home, ``Gateway.predict`` awaited one
single-row request at a time over 1,000 test customers, on the model path (prediction
cache off, ``--model-requests`` per round) and the in-process cache-hit path (cache on,
every row cached first, ``--requests`` per round), ``--rounds`` rounds; the median of the
rounds' mean µs per request. Micro-batching is off (a lone request would wait for
company). The prediction log's writer runs as in serving (flush 0.5 s), so its per-batch
work is in the figures. Unless ``--no-policy``, the rounds are repeated with a 0.1 share
(request_id key) when the tree has exploration. Compare trees that differ only by the
exploration commits (a worktree with them reverted, as above), in ABBA order: the figures
of a shared machine drift. Results: ``benchmarks/results/exploration.json`` (one entry
per run, with ``--label``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "exploration.json"


def _bodies(n: int) -> tuple[Any, list[bytes]]:
    from lightgbm import LGBMClassifier

    from keel.demo.data import TARGET, load_churn, split

    train, _valid, test = split(load_churn(), seed=7)
    features = [c for c in train.columns if c not in (TARGET, "customer_id")]
    model = LGBMClassifier(n_estimators=100, num_leaves=15, verbose=-1, random_state=1)
    model.fit(train[features], train[TARGET])
    rows = test[features].dropna().head(n).astype(object).to_dict("records")
    bodies = [
        json.dumps(
            {"instances": [{k: v if isinstance(v, str) else float(v) for k, v in r.items()}]}
        ).encode()
        for r in rows
    ]
    return (model, train[features].head(5)), bodies


async def _rounds(
    gateway: Any, target: Any, bodies: list[bytes], requests: int, rounds: int, warm: int
) -> float:
    """Median over rounds of the mean µs per awaited request."""
    for body in bodies[:warm]:  # warm-up: loads the model, fills the cache when it is on
        await gateway.predict(target, body, client_key="bench")
    per_round = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(requests):
            await gateway.predict(target, bodies[i % len(bodies)], client_key="bench")
        per_round.append((time.perf_counter() - started) / requests * 1e6)
    return statistics.median(per_round)


async def _measure(
    home: Path, model: Any, example: Any, bodies: list[bytes], args: Any
) -> dict[str, float]:
    from keel import Client
    from keel.config import Settings
    from keel.serving.interface import Target
    from keel.serving.startup import start_gateway

    out: dict[str, float] = {}
    for cache in ("off", "on"):
        settings = Settings(
            home=home / f"keel-{cache}",
            serving_rate_limit="",
            serving_cache=cache == "on",
            serving_batching=False,  # one awaited request at a time: no batch to wait for
            prediction_log_fsync=False,
        )
        client = Client(settings=settings)
        with client.start_run("bench", capture_env=False) as run:
            run.log_model(model, registered_name="churn", input_example=example)
        services = client.transport.services  # type: ignore[attr-defined]
        gateway = await start_gateway(settings, services.registry)
        target = Target("churn", version=1)
        try:
            # the model path: every request a model call; cache hits: every body cached first
            path, n, warm = ("model", args.model_requests, 50)
            if cache == "on":
                path, n, warm = ("cache_hit", args.requests, len(bodies))
            out[f"{path}.off_us"] = await _rounds(gateway, target, bodies, n, args.rounds, warm)
            if args.policy and hasattr(client, "set_exploration"):
                client.set_exploration("churn", share=0.1, action=1)
                out[f"{path}.on_us"] = await _rounds(gateway, target, bodies, n, args.rounds, warm)
        finally:
            await gateway.close()
            client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="per round, cache hits")
    parser.add_argument("--model-requests", type=int, default=300, help="per round, model")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--label", default="after")
    parser.add_argument("--no-policy", dest="policy", action="store_false")
    args = parser.parse_args()
    (model, example), bodies = _bodies(1000)
    with tempfile.TemporaryDirectory(prefix="keel-bench-explore-") as tmp:
        figures = asyncio.run(_measure(Path(tmp), model, example, bodies, args))
    import keel

    result = {
        "label": args.label,
        "keel": str(Path(keel.__file__).parent),
        **figures,
        "requests": args.requests,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    runs.append(result)
    RESULTS.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
