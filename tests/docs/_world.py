"""The small world the docs examples run in: a KEEL_HOME and files their placeholders name.

``build`` runs once per test session (``python tests/docs/_world.py HOME FILES``): model
``churn`` versions 1–4 (small LightGBM models on the telco churn table), ``champion`` on 3 and
``challenger`` on 4, an hour of predictions served by the champion with labels for them, and
the files the docs name (``train.parquet``, ``holdout.parquet``, …). Each Markdown file then runs
in a copy of it. ``prelude`` gives the Python blocks their placeholder names (``train_df``,
``X_train``, ``rows``, ``job_id`` …), and ``SHELL_PLACEHOLDERS`` the shell lines theirs.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

MODEL = "churn"
LABEL = "churn"
# The fixture MLflow model that stands in for ``./mlruns/0/<run>/artifacts/model``.
MLFLOW_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/mlflow/lightgbm_sklearn_skops"


def churn_frame() -> pd.DataFrame:
    """The telco churn table without its id column (keel.demo.data.load_churn)."""
    from keel.demo.data import load_churn

    return load_churn().drop(columns=["customer_id"])


def features_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[LABEL])


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects, the shape a request body carries."""
    return [
        {k: v for k, v in row.items() if k != LABEL and v == v}  # v == v drops NaN
        for row in frame.astype(object).to_dict("records")
    ]


def _fit(frame: pd.DataFrame, seed: int) -> Any:
    from lightgbm import LGBMClassifier

    model = LGBMClassifier(n_estimators=20, num_leaves=8, random_state=seed, verbose=-1)
    return model.fit(features_of(frame), frame[LABEL])


def build(home: Path, files: Path) -> None:
    """Seed ``home`` and write the placeholder files into ``files``."""
    import keel
    from keel.config import Settings

    frame = churn_frame()
    train, holdout, recent = frame.iloc[:4000], frame.iloc[4000:5500], frame.iloc[5500:5700]
    files.mkdir(parents=True, exist_ok=True)
    train.to_parquet(files / "train.parquet")
    holdout.to_parquet(files / "holdout.parquet")
    holdout.to_parquet(files / "h.parquet")
    shifted = recent.assign(tenure=recent["tenure"] * 3 + 20)
    shifted.to_parquet(files / "last_week.parquet")
    recent.to_csv(files / "last_week.csv", index=False)  # a week without drift
    _feature_files(files)
    model_dir = files / "mlruns" / "0" / "<run>" / "artifacts" / "model"
    shutil.copytree(MLFLOW_FIXTURE, model_dir)
    with keel.Client(settings=Settings(home=home)) as client:
        for seed in range(1, 8):
            with client.start_run(experiment=MODEL, seed=seed, capture_env=False) as run:
                run.log_params({"model": "lgbm", "seed": seed})
                run.log_input(train, name="churn-train", context="training")
                run.log_metrics({"auc": 0.80 + seed / 100})
                run.log_model(
                    _fit(train.sample(frac=0.8, random_state=seed), seed),
                    registered_name=MODEL,
                    input_example=features_of(train).head(5),
                )
        client.set_alias(MODEL, "champion", 3, reason="docs fixture")
        client.set_alias(MODEL, "challenger", 4, reason="docs fixture")
        # docs/automation.md approves v7 and rejects v6: retrained versions waiting for a human.
        for waiting in (6, 7):
            client.update_model_version(MODEL, waiting, tags={"keel.approval.status": "pending"})
        client.create_monitor(
            "churn-weekly", MODEL, window="7d", task="classification", label_column=LABEL
        )
        served = features_of(recent)
        answer = client.predict(f"models:/{MODEL}@champion", served)
    _served_with_features(home, files)
    _jobs(home, files)
    (files / "mypkg").mkdir()
    (files / "mypkg" / "__init__.py").write_text("")
    (files / "mypkg" / "train.py").write_text(TRAIN_MODULE)
    served.to_parquet(files / "served.parquet")
    labels = pd.DataFrame({"request_id": [answer["request_id"]], "label": [1]})
    labels.to_parquet(files / "labels.parquet")


FEATURES_YAML = """\
entities:
  - name: customer
    join_keys: [customer_id]
    value_type: int64
feature_views:
  - name: customer_account
    entities: [customer]
    source: {type: file, path: data/customer_account.parquet, timestamp_field: event_timestamp}
    ttl: 3d
    features: {tenure_days: int64, plan_type: string, monthly_revenue: float64}
  - name: customer_usage
    entities: [customer]
    source: {type: file, path: data/customer_usage.parquet, timestamp_field: event_timestamp}
    ttl: 6h
    features: {calls_last_30d: float64, login_count_last_7d: int64}
feature_services:
  - name: churn_v1
    features: ["customer_account:*", "customer_usage:calls_last_30d"]
"""


def usage(now: pd.Timestamp, customers: pd.Series) -> pd.DataFrame:
    """Rows of the ``customer_usage`` view (the source, and ``events_df`` pushed online)."""
    count = len(customers)
    return pd.DataFrame(
        {
            "customer_id": customers.to_numpy(),
            "event_timestamp": [now - pd.Timedelta(minutes=10)] * count,
            "calls_last_30d": [float(i % 40) for i in range(count)],
            "login_count_last_7d": [i % 9 for i in range(count)],
        }
    )


def _feature_files(files: Path) -> None:
    """``features.yaml`` (a file source only) and the account table docs/features.md reads."""
    from keel.demo.data import load_churn

    table = load_churn().head(200)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    account = pd.DataFrame(
        {
            "customer_id": table["customer_id"].astype("int64"),
            "event_timestamp": [now - pd.Timedelta(hours=i % 48 + 1) for i in range(len(table))],
            "tenure_days": (table["tenure"] * 30).astype("int64"),
            "plan_type": table["contract"].astype(str),
            "monthly_revenue": table["monthly_charges"].astype("float64"),
        }
    )
    (files / "data").mkdir()
    account.to_parquet(files / "data" / "customer_account.parquet")
    usage(now, account["customer_id"]).to_parquet(files / "data" / "customer_usage.parquet")
    (files / "features.yaml").write_text(FEATURES_YAML)


TRAIN_MODULE = """\
# docs/automation.md's mypkg.train:train, a fixture: LightGBM on the churn features.
from lightgbm import LGBMClassifier


def train(frame, params):
    params = dict(params)
    weight = params.pop("sample_weight", None)
    model = LGBMClassifier(n_estimators=20, verbose=-1, **params)
    return model.fit(frame.drop(columns=["churn"]), frame["churn"], sample_weight=weight)
"""


def _served_with_features(home: Path, files: Path) -> None:
    """Requests churn v3 answered on 2025-01-15 through the feature service (outside every
    monitor window): docs/features.md compares training rows with these served values."""
    from keel.config import Settings
    from keel.serving import PredictionLog, PredictionRecord

    account = pd.read_parquet(files / "data" / "customer_account.parquet").head(50)
    # A fixed day before every window the docs name (2026-03-01, 2026-11-23..30, the last
    # 7 days), whatever today is.
    at_ms = int(pd.Timestamp("2025-01-15T12:00Z").timestamp() * 1000)
    log = PredictionLog.from_settings(Settings(home=home))
    for i, row in enumerate(account.drop(columns=["event_timestamp"]).to_dict("records")):
        features = {**row, "calls_last_30d": float(i % 40)}
        log.append(
            PredictionRecord(
                request_id=uuid.uuid4().hex,
                at_ms=at_ms + i,
                model=MODEL,
                version=3,
                features=features,
                output=0,
                probabilities=[0.8, 0.2],
                latency_ms=1.0,
                cached=False,
                fallback=False,
            )
        )
    log.close()


def _jobs(home: Path, files: Path) -> None:
    """Two monitor runs queued for an hour from now: ``JOB_ID`` (shell) and ``job_id``."""
    from keel.config import Settings
    from keel.services import open_services

    services = open_services(Settings(home=home))
    try:
        ids = [
            services.jobs.enqueue("monitor.run", {"monitor": "churn-weekly"}, delay_s=3600).id
            for _ in range(2)
        ]
    finally:
        services.close()
    (files / "jobs.json").write_text(json.dumps({"JOB_ID": ids[0], "job_id": ids[1]}))


def prelude(namespace: dict[str, Any]) -> None:
    """Placeholder names the Python blocks use, bound to small real values."""
    from datetime import UTC, datetime, timedelta

    frame = churn_frame()
    train = frame.iloc[:4000]
    accounts = features_of(frame).rename(
        columns={"contract": "plan_type", "monthly_charges": "monthly_revenue"}
    )
    import keel

    client = keel.Client()  # embedded, on the file's KEEL_HOME
    namespace.update(
        client=client,
        Path=Path,
        UTC=UTC,
        datetime=datetime,
        train_df=train,
        X_train=features_of(train),
        y_train=train[LABEL],
        X_new=features_of(frame.iloc[5700:5710]),
        rows=records(frame.iloc[5500:5700]),
        holdout_df=frame.iloc[4000:5500],
        # docs/monitoring.md's drift example: an account table whose prices rose and whose
        # customers moved to month-to-month plans last week.
        training_df=accounts.iloc[:4000],
        last_week_df=accounts.iloc[5500:5700].assign(
            plan_type="Month-to-month", monthly_revenue=lambda f: f["monthly_revenue"] * 1.35
        ),
        start=datetime.now(UTC) - timedelta(days=3),
        now_ms=int(time.time() * 1000),
        rid=str(uuid.uuid4()),
        # docs/features.md: entity rows to join features to, and usage events to push.
        labels_df=pd.DataFrame(
            {"customer_id": range(1, 51), "event_timestamp": pd.Timestamp.now(tz="UTC")}
        ),
        events_df=usage(pd.Timestamp.now(tz="UTC").floor("s"), pd.Series(range(1, 51))),
        job_id=placeholders()["job_id"],
        # docs/serving.md's log record: one served row and its answer.
        version=client.get_model_version(MODEL, 3),
        row=records(frame.iloc[5700:5701])[0],
        label=1,
        p0=0.31,
        p1=0.69,
    )


def placeholders() -> dict[str, str]:
    """Ids the world made that the docs write as ``JOB_ID`` / ``job_id`` (cwd: the files)."""
    return dict(json.loads(Path("jobs.json").read_text()))


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
