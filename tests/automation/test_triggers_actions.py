"""What a met trigger does: one job per storm, alerts instead of retraining on broken data,
prerequisites, feature changes (R-FEA-08), the seeds' trigger sets, unattended evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tests.automation.triggerdata as data
from tests.automation.conftest import drain

from keel import Client
from keel.automation.triggers import parse_trigger
from keel.demo.data import TARGET
from keel.errors import InvalidInput
from keel.services import Services

Env = tuple[Services, Any]
FIXTURES = Path(__file__).parent / "fixtures"
DRIFT = {
    "name": "churn-drift",
    "model": "churn",
    "cooldown": "1d",
    "any": [{"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 3, "window": "1d"}],
}


def serve_last_day(services: Services, model: Any, rows: Any, prefix: str) -> None:
    now = data.now_ms()
    data.serve(services, model, rows, now - 20 * data.HOUR_MS, now - 60_000, prefix=prefix)


def test_trigger_storm_gives_one_retraining(trigger_env: Env, churn_rows: Any) -> None:
    services, model = trigger_env
    services.triggers.apply(DRIFT)
    serve_last_day(services, model, data.shifted(churn_rows[1].iloc[1000:1400]), "s")
    start = data.now_ms()
    results = [services.triggers.evaluate("churn-drift", start + i * 60_000) for i in range(10)]
    assert all(r.met for r in results)
    assert [r.fired for r in results] == [True] + [False] * 9
    assert all("cooldown" in r.reason for r in results[1:])
    assert len(services.jobs.list_jobs(kind="retrain.run")) == 1
    assert len(services.decisions.query(model="churn", kind="trigger_evaluation")) == 10


def test_quality_break_alerts_and_never_retrains(trigger_env: Env, churn_rows: Any) -> None:
    services, model = trigger_env
    services.triggers.apply(DRIFT)
    rows = churn_rows[1].iloc[1000:1400]
    # A unit change upstream: charges arrive in cents. The model still answers.
    broken = rows.assign(
        monthly_charges=rows["monthly_charges"] * 100, total_charges=rows["total_charges"] * 100
    )
    serve_last_day(services, model, broken.assign(tenure=broken["tenure"] + 30), "q")
    result = services.triggers.evaluate("churn-drift", data.now_ms())
    assert result.met and not result.fired
    assert result.action == "alert" and "data-quality break" in result.reason
    assert services.jobs.list_jobs(kind="retrain.run") == []
    (diagnosis,) = services.decisions.query(model="churn", kind="diagnosis")
    assert diagnosis.details["verdict"] == "data-quality break"
    assert diagnosis.details["action"] == "alert"
    assert diagnosis.related["evaluation"] == result.decision_id


def test_prerequisites_block_firing(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(
        {
            "name": "hand",
            "model": "churn",
            "any": [{"metric": "manual"}],
            "prerequisites": {"labels": True, "min_labels": 100_000},
        }
    )
    result = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    assert result.met and not result.fired
    assert "prerequisites" in result.reason and result.prerequisites["labels"]["n"] >= 990
    assert services.jobs.list_jobs(kind="retrain.run") == []


def test_feature_change_retrains_dependent_model(
    trigger_env: Env, churn_rows: Any, tmp_path: Path
) -> None:
    services, _ = trigger_env
    source = tmp_path / "account.parquet"
    rows = (
        churn_rows[1].iloc[:200].assign(event_timestamp=data.pd.Timestamp("2026-01-01", tz="UTC"))
    )
    rows[["customer_id", "event_timestamp", "tenure", "monthly_charges"]].to_parquet(source)
    definitions = f"""
entities:
  - {{name: customer, join_keys: [customer_id], value_type: int64}}
feature_views:
  - name: account
    entities: [customer]
    source: {{type: file, path: {source}, timestamp_field: event_timestamp}}
    features: {{tenure: float64, monthly_charges: float64}}
feature_services:
  - {{name: churn_v1, model: churn, features: ["account:*"]}}
"""
    defs = tmp_path / "features.yaml"
    defs.write_text(definitions)
    services.features.apply(defs)
    services.triggers.apply(
        {"name": "views", "model": "churn", "cooldown": "0s", "any": [{"metric": "feature_change"}]}
    )
    first = services.triggers.evaluate("views", data.now_ms())
    assert first.conditions[0].details["views"] == ["account"]  # found through churn_v1
    assert first.fired  # the view is newer than the model
    client = Client(settings=services.settings)
    train = churn_rows[0]
    model = data.LogisticRegression(max_iter=500).fit(train[data.FEATURES], train[TARGET])
    with client.start_run("retrained") as run:
        run.log_model(model, registered_name="churn", input_example=train[data.FEATURES][:5])
    client.close()
    assert not services.triggers.evaluate("views", data.now_ms()).met  # retrained since
    defs.write_text(definitions.replace("float64}", "float64, contract_months: int64}"))
    services.features.apply(defs)
    changed = services.triggers.evaluate("views", data.now_ms())
    assert changed.fired and "account (version 2)" in changed.conditions[0].reason


def test_seed_004_churn_set_as_written(trigger_env: Env) -> None:
    spec = parse_trigger((FIXTURES / "trigger_seed004.yaml").read_text())
    assert [c.metric for c in spec.conditions] == [
        "roc_auc",
        "feature_drift_psi",
        "schedule",
        "new_labels",
    ]
    services, _ = trigger_env
    services.triggers.apply(spec)
    result = services.triggers.evaluate("churn-retrain", data.now_ms())
    auc, drift, schedule, volume = result.conditions
    assert auc.threshold == 0.78 and auc.value > 0.78 and not auc.met
    assert drift.details["min_features"] == 3
    assert not schedule.met and volume.value >= 990 and not volume.met


def test_seed_001_yaml_as_written() -> None:
    spec = parse_trigger((FIXTURES / "trigger_seed001.yaml").read_text())
    accuracy, psi, shift = spec.conditions
    assert (accuracy.metric, accuracy.threshold, accuracy.window) == ("accuracy", 0.05, "7d")
    assert psi.test == "psi" and psi.features == ["user_age_bucket", "purchase_amount_bin"]
    assert (shift.kind, shift.threshold, shift.window) == ("prediction_shift", 0.1, "24h")


def test_seed_001_features_must_exist_for_the_model(trigger_env: Env) -> None:
    services, _ = trigger_env
    text = (FIXTURES / "trigger_seed001.yaml").read_text().replace("model: fraud", "model: churn")
    with pytest.raises(InvalidInput) as caught:
        services.triggers.apply(text)
    assert caught.value.field == "triggers[1].features"
    assert "user_age_bucket" in caught.value.message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"windw": "7d"}, "any[0].windw"),
        ({"metric": "auc_roc"}, "any[0].metric"),
        ({"metric": "schedule", "below": None, "cron": "0 25 * * *"}, "any[0].cron"),
        ({"features": ["tenure"], "below": None}, "any[0]"),
    ],
)
def test_bad_definitions_name_the_key(trigger_env: Env, change: dict[str, Any], field: str) -> None:
    services, _ = trigger_env
    condition = {"metric": "auc", "below": 0.78, **change}
    condition = {k: v for k, v in condition.items() if v is not None}
    with pytest.raises(InvalidInput) as caught:
        services.triggers.apply({"name": "bad", "model": "churn", "any": [condition]})
    assert caught.value.field == field
    assert services.triggers.list_triggers() == []


def test_scheduler_evaluates_triggers_unattended(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply({"name": "hand", "model": "churn", "any": [{"metric": "manual"}]})
    schedule = services.jobs.get_schedule("triggers")
    assert (schedule.kind, schedule.cron) == ("triggers.evaluate", "* * * * *")
    (job,) = services.jobs.tick(schedule.created_at_ms + 61_000)
    drain(services.jobs)
    done = services.jobs.get(job.id)
    assert done.status == "succeeded" and done.result["evaluated"] == 1
    assert len(services.decisions.query(model="churn", kind="trigger_evaluation")) == 1


def test_retrain_section_checked_by_the_registered_kind(trigger_env: Env) -> None:
    services, _ = trigger_env

    def check(_services: Any, args: dict[str, Any]) -> None:
        if "train" not in args["retrain"]:
            raise InvalidInput("args.retrain.train: required", field="args.retrain.train")

    data.register_kind("retrain.run", data.record_retrain, check=check)
    spec = {"name": "hand", "model": "churn", "any": [{"metric": "manual"}]}
    with pytest.raises(InvalidInput) as caught:
        services.triggers.apply(spec)
    assert caught.value.field == "retrain.train"
    services.triggers.apply({**spec, "retrain": {"train": "pkg.mod:train"}})
    result = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    (job,) = services.jobs.list_jobs(kind="retrain.run")
    assert job.args["retrain"] == {"train": "pkg.mod:train"}  # the section, verbatim
    assert job.args["decision_id"] == result.decision_id


def test_condition_that_cannot_be_measured_is_recorded_not_raised(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.registry.create_model("bare")  # no version, so no reference to compare with
    services.triggers.apply({**DRIFT, "name": "bare-drift", "model": "bare"})
    result = services.triggers.evaluate("bare-drift", data.now_ms())
    assert not result.met and result.conditions[0].reason.startswith("not evaluated:")
    (record,) = services.decisions.query(model="bare", kind="trigger_evaluation")
    assert record.details["conditions"][0]["reason"].startswith("not evaluated:")
