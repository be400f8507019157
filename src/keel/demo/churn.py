"""``keel demo``: track → register → alias → load → score on the telco churn table.

Runs embedded (SQLite and local artifacts in a fresh home), needs no server and
no network. Each later area of keel (serving, monitoring, retraining) adds its
step here.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from keel.client import Client
from keel.client._local import LocalTransport
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.demo.loop import serve_and_monitor
from keel.services import Services

__all__ = ["run_demo"]

SEED = 42
EXPERIMENT = "telco-churn"
MODEL = "telco-churn"


def _scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import (
        brier_score_loss,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    predicted = (proba >= 0.5).astype(int)
    return {
        "auc": float(roc_auc_score(y_true, proba)),
        "recall": float(recall_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted)),
        "brier": float(brier_score_loss(y_true, proba)),
    }


def _baseline() -> Any:
    from sklearn.compose import make_column_selector, make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_include="category")),
        (
            make_pipeline(SimpleImputer(), StandardScaler()),
            make_column_selector(dtype_include="number"),
        ),
    )
    return make_pipeline(columns, LogisticRegression(max_iter=2000))


def _lightgbm(params: dict[str, Any]) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**params, random_state=SEED, verbose=-1)


def _train(
    client: Client,
    console: Console,
    name: str,
    estimator: Any,
    params: dict[str, Any],
    data: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> tuple[Any, dict[str, float], int]:
    train, valid, test = data
    features = [c for c in train.columns if c not in (TARGET, "customer_id")]
    with client.start_run(EXPERIMENT, name=name, seed=SEED, params=params) as run:
        run.log_input(train, name="telco-churn-train", context="training")
        run.log_input(valid, name="telco-churn-valid", context="validation")
        run.log_input(test, name="telco-churn-test", context="evaluation")
        started = time.perf_counter()
        estimator.fit(train[features], train[TARGET])
        run.log_metric("train_seconds", time.perf_counter() - started)
        for split_name, frame in (("valid", valid), ("test", test)):
            proba = estimator.predict_proba(frame[features])[:, 1]
            scores = _scores(frame[TARGET].to_numpy(), proba)
            run.log_metrics({f"{split_name}_{k}": v for k, v in scores.items()})
        metrics = _scores(test[TARGET].to_numpy(), estimator.predict_proba(test[features])[:, 1])
        run.log_metrics(metrics)
        version = run.log_model(
            estimator,
            registered_name=MODEL,
            input_example=train[features].head(5),
            description=f"{name} on the IBM telco churn table",
        )
    console.print(
        f"  [green]✓[/] {name}: AUC {metrics['auc']:.3f}, recall {metrics['recall']:.3f} "
        f"→ registered {version.uri}"  # type: ignore[union-attr]
    )
    return estimator, metrics, version.version  # type: ignore[union-attr]


def run_demo(
    home: str | None = None, keep: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Run the demo; returns the figures it printed (used by the tests)."""
    console = console or Console()
    workdir = Path(home) if home else Path(tempfile.mkdtemp(prefix="keel-demo-"))
    client = Client(settings=Settings(home=workdir))
    try:
        return _walk(client, console, workdir)
    finally:
        client.close()
        if home is None and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif home is None:
            console.print(f"demo home kept at {workdir} (KEEL_HOME={workdir} keel models list)")


def _walk(client: Client, console: Console, workdir: Path) -> dict[str, Any]:
    console.print(Panel.fit("keel demo: the IBM telco churn table", style="bold cyan"))
    frame = load_churn()
    data = split(frame, SEED)
    console.print(
        f"1. data: {len(frame):,} customers, churn rate {frame[TARGET].mean():.1%}; "
        f"random split {len(data[0])}/{len(data[1])}/{len(data[2])} (seed {SEED})"
    )
    console.print(f"2. track two runs and register each as a version of [bold]{MODEL}[/]")
    _, base_metrics, base_version = _train(
        client, console, "logistic-baseline", _baseline(), {"model": "logreg"}, data
    )
    lgbm_params = {
        "n_estimators": 300,
        "learning_rate": 0.03,
        "num_leaves": 15,
        "min_child_samples": 40,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
    }
    lgbm, lgbm_metrics, lgbm_version = _train(
        client, console, "lightgbm", _lightgbm(lgbm_params), {"model": "lgbm", **lgbm_params}, data
    )
    console.print("3. aliases: the baseline is champion first; the better model takes over")
    client.set_alias(MODEL, "champion", base_version, reason="first model")
    best = max(
        (base_metrics, base_version), (lgbm_metrics, lgbm_version), key=lambda t: t[0]["auc"]
    )
    challenger = lgbm_version if best[1] == base_version else base_version
    delta = best[0]["auc"] - min(base_metrics["auc"], lgbm_metrics["auc"])
    client.set_alias(MODEL, "champion", best[1], reason=f"AUC +{delta:.3f} on the test split")
    client.set_alias(MODEL, "challenger", challenger, reason="runner-up")
    for event in client.alias_history(MODEL):
        console.print(
            f"  {event.alias}: v{event.from_version or '-'} → v{event.to_version} ({event.reason})"
        )

    console.print(f"4. load models:/{MODEL}@champion and score held-out customers")
    champion = client.load_model(f"models:/{MODEL}@champion")
    test = data[2]
    features = [c for c in test.columns if c not in (TARGET, "customer_id")]
    proba = champion.predict_proba(test[features])[:, 1]
    scored = test.assign(churn_probability=proba).nlargest(5, "churn_probability")
    grid = Table(title="highest churn risk (test split)", title_justify="left")
    for column in (
        "customer_id",
        "contract",
        "tenure",
        "monthly_charges",
        "churn_probability",
        TARGET,
    ):
        grid.add_column(column)
    for _, row in scored.iterrows():
        grid.add_row(
            str(row["customer_id"]),
            str(row["contract"]),
            f"{row['tenure']:.0f}",
            f"{row['monthly_charges']:.2f}",
            f"{row['churn_probability']:.3f}",
            "yes" if row[TARGET] else "no",
        )
    console.print(grid)
    reloaded_auc = _scores(test[TARGET].to_numpy(), proba)["auc"]

    console.print("5. lineage of the champion")
    version = client.resolve(f"models:/{MODEL}@champion")
    lineage = client.lineage(MODEL, version.version)
    for item in lineage.datasets:
        console.print(
            f"  {item['context']:<10} {item['name']} v{item['dataset_version']} "
            f"sha256 {item['content_hash'][:16]}… {item['row_count']} rows"
        )
    run = lineage.run or {}
    console.print(
        f"  run {run.get('id')} env {str(lineage.environment_hash)[:12]} "
        f"code {lineage.code_commit or 'not in git'}"
    )

    best_runs = client.search_runs(EXPERIMENT, "metrics.auc > 0.5", ["metrics.auc DESC"])
    summary = Table(title="runs by test AUC", title_justify="left")
    for column in ("run", "model", "auc", "recall", "precision", "f1", "brier"):
        summary.add_column(column)
    for r in best_runs:
        summary.add_row(
            r.name or r.id[:8],
            r.params.get("model", "-"),
            *(f"{r.metrics[k]:.3f}" for k in ("auc", "recall", "precision", "f1", "brier")),
        )
    console.print(summary)
    loop = serve_and_monitor(client, _services(client), console, MODEL, test)
    console.print(
        Panel.fit(
            f"champion = {version.uri} ({version.flavor}), AUC {reloaded_auc:.3f} after reload",
            title="done",
            style="green",
        )
    )
    return {
        "baseline": base_metrics,
        "lightgbm": lgbm_metrics,
        "champion_version": version.version,
        "reloaded_auc": reloaded_auc,
        "in_memory_auc": best[0]["auc"],
        "lgbm_model": lgbm,
        "loop": loop,
    }


def _services(client: Client) -> Services:
    """The embedded services behind the demo's client (the demo never runs a server)."""
    transport = client.transport
    if not isinstance(transport, LocalTransport):
        raise TypeError("the demo runs embedded")
    return transport.services
