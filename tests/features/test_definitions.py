"""Definitions: YAML with field-path errors, plan/apply versions, usage and deprecation."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.features.conftest import DEFS_YAML, Seed

from keel.errors import InvalidInput, NotFound
from keel.features import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    FileSource,
    load_yaml,
)
from keel.services import Services


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "defs.yaml"
    path.write_text(text)
    return path


def test_load_yaml_reads_seed(seed: Seed) -> None:
    defs = load_yaml(seed.defs)
    account = defs.feature_views[0]
    assert account.ttl == 3 * 86400 and account.freshness_sla == 86400
    assert [f.name for f in account.features][:2] == ["tenure_days", "plan_type"]
    assert Path(account.source.path) == seed.account_path.resolve()  # type: ignore[union-attr]
    assert defs.feature_services[0].model == "churn"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("ttl: 3d", "ttl: three days"), "feature_views[0].ttl"),
        (("tenure_days: int64", "tenure_days: decimal"), "feature_views[0].features[0].dtype"),
        (("cadence: daily", "cadence: sometimes"), "feature_views[0].cadence"),
        (("join_keys: [customer_id]", "join_keys: []"), "entities[0].join_keys"),
        (("owner: billing-team", "colour: red"), "feature_views[0].colour"),
        (
            ("{{type: file, path: {account},", "{{type: ftp, path: {account},"),
            "feature_views[0].source",
        ),
        (('"customer_usage:calls_last_30d"', '"customer_usage"'), "feature_services[0].features"),
    ],
)
def test_load_yaml_error_names_field_path(
    tmp_path: Path, change: tuple[str, str], field: str
) -> None:
    text = DEFS_YAML.replace(*change).format(account="a.parquet", usage="u.parquet")
    with pytest.raises(InvalidInput) as info:
        load_yaml(_yaml(tmp_path, text))
    assert info.value.field == field
    assert info.value.message.startswith(field)


def test_load_yaml_errors_are_worded_like_every_other_input(tmp_path: Path) -> None:
    # keel._models.invalid_errors: no "Value error," prefix, the unknown key named, the
    # union's tag left out of every listed path, not only the first
    text = (
        DEFS_YAML.replace("ttl: 3d", "ttl: three days")
        .replace("owner: billing-team", "colour: red")
        .format(account="a.parquet", usage="[u.parquet]")
    )
    with pytest.raises(InvalidInput) as info:
        load_yaml(_yaml(tmp_path, text))
    listed = {e["field"]: e["message"] for e in info.value.detail["errors"]}
    assert listed["feature_views[0].colour"] == "unknown key 'colour'"
    assert listed["feature_views[1].source.path"] == "Input should be a valid string"
    assert listed["feature_views[0].ttl"].startswith("expected a duration like 90s")
    assert info.value.message == f"{info.value.field}: {listed[str(info.value.field)]}"
    assert not any("Value error" in m or ".file." in f for f, m in listed.items())


def test_load_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not valid YAML at line 3"):
        load_yaml(_yaml(tmp_path, "entities:\n  - name: [unclosed\n"))


def test_apply_unknown_entity_named(fs: FeatureStore, seed: Seed, tmp_path: Path) -> None:
    text = seed.defs.read_text().replace("entities: [customer]", "entities: [client]", 1)
    with pytest.raises(InvalidInput) as info:
        fs.apply(_yaml(tmp_path, text))
    assert info.value.field == "feature_views[0].entities[0]"
    assert fs.plan(seed.defs).has_changes is False  # nothing half-written


def test_apply_is_idempotent_and_versions_changes(fs: FeatureStore, seed: Seed) -> None:
    assert not fs.plan(seed.defs).has_changes
    text = (
        seed.defs.read_text()
        .replace("ttl: 6h", "ttl: 12h")
        .replace("features_used_count: int64", "features_used_count: int64\n      extra: float64")
    )
    changed = seed.root / "v2.yaml"
    changed.write_text(text)
    plan = fs.plan(changed)
    (item,) = [i for i in plan.items if i.action != "unchanged"]
    assert (item.action, item.name, item.from_version, item.to_version) == (
        "change",
        "customer_usage",
        1,
        2,
    )
    assert "ttl: 21600 → 43200" in item.changes
    assert "features[extra].dtype: '∅' → 'float64'" in item.changes
    assert fs.list_definitions("feature_view")[1].version == 1  # plan wrote nothing
    fs.apply(changed)
    assert [h.version for h in fs.history("customer_usage")] == [1, 2]
    assert fs.get_view("customer_usage").ttl == 12 * 3600


def test_apply_prunes_missing_definitions(fs: FeatureStore, seed: Seed) -> None:
    defs = load_yaml(seed.defs)
    kept = defs.model_copy(update={"feature_services": []})
    plan = fs.apply(kept)
    assert [(i.action, i.name) for i in plan.items if i.action != "unchanged"] == [
        ("remove", "churn_v1")
    ]
    assert [d.name for d in fs.list_definitions("feature_service")] == []
    assert fs.history("churn_v1")[-1].removed_at_ms is not None
    readded = fs.apply(defs)
    assert [(i.action, i.to_version) for i in readded.items if i.name == "churn_v1"] == [("add", 2)]


def test_apply_without_prune_keeps_others(fs: FeatureStore) -> None:
    extra = FeatureService(name="upsell", features=["customer_usage:*"], model="upsell")
    plan = fs.apply([extra], prune=False)
    assert [i.action for i in plan.items] == ["add"]
    assert {d.name for d in fs.list_definitions("feature_service")} == {"churn_v1", "upsell"}


def test_apply_python_objects_duplicate_name(fs: FeatureStore) -> None:
    entity = Entity(name="store", join_keys=["store_id"], value_type="string")
    with pytest.raises(InvalidInput, match="defined twice"):
        fs.apply([entity, entity], prune=False)


def test_history_unknown_is_not_found(fs: FeatureStore) -> None:
    with pytest.raises(NotFound):
        fs.history("nothing")


def test_dependent_models_from_feature_services(fs: FeatureStore) -> None:
    assert fs.dependent_models("customer_account") == ["churn"]
    assert fs.dependent_models("customer_usage", "calls_last_30d") == ["churn"]
    assert fs.dependent_models("customer_usage", "login_count_last_7d") == []


def test_unused_features_after_90_days(services: Services, seed: Seed) -> None:
    now = [1_800_000_000.0]
    store = FeatureStore(services, clock=lambda: now[0])
    store.apply(seed.defs)
    assert store.unused_features() == []
    import pandas as pd

    now[0] += 91 * 86400  # usage is stamped with the store's clock
    entity = pd.DataFrame({"customer_id": [1], "event_timestamp": [pd.Timestamp("2026-01-02")]})
    store.get_historical_features(entity, ["customer_account:tenure_days"])
    unused = {(u.view, u.feature): u for u in store.unused_features()}
    assert ("customer_account", "tenure_days") not in unused
    assert unused[("customer_account", "plan_type")].dependent_models == ["churn"]
    assert unused[("customer_usage", "login_count_last_7d")].dependent_models == []
    assert len(unused) == 9
    store.close()


def test_sql_source_reads_table(services: Services, tmp_path: Path, seed: Seed) -> None:
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'source.db'}"
    engine = create_engine(url)
    seed.account.to_sql("accounts", engine, index=False)
    engine.dispose()
    store = FeatureStore(services)
    view = FeatureView(
        name="account_sql",
        entities=["customer"],
        source={"type": "sql", "url": url, "table": "accounts"},
        features=[{"name": "tenure_days", "dtype": "int64"}],
    )
    store.apply([Entity(name="customer", join_keys=["customer_id"]), view])
    import pandas as pd

    entity = pd.DataFrame({"customer_id": [3], "event_timestamp": ["2026-01-02T12:00:00Z"]})
    result = store.get_historical_features(entity, ["account_sql:tenure_days"])
    day2 = seed.account[seed.account.event_timestamp == pd.Timestamp("2026-01-02", tz="UTC")]
    assert result["tenure_days"][0] == day2[day2.customer_id == 3]["tenure_days"].iloc[0]


def test_file_source_formats_validated() -> None:
    with pytest.raises(ValueError, match="format"):
        FileSource(path="x.json", format="json")  # type: ignore[arg-type]


def test_unreachable_sql_source_is_named_at_apply_and_at_retrieval(services: Services) -> None:
    """#15.24: docs/features.md's source pointed at a database that did not exist; the
    error said only ``OperationalError`` and apply accepted it without a word."""
    import pandas as pd

    url = "postgresql+psycopg://127.0.0.1:5432/keel_no_such_db"
    store = FeatureStore(services)
    view = FeatureView(
        name="usage_sql",
        entities=["customer"],
        source={"type": "sql", "url": url, "table": "usage_hourly"},
        features=[{"name": "calls", "dtype": "float64"}],
    )
    plan = store.apply([Entity(name="customer", join_keys=["customer_id"]), view])
    assert len(plan.warnings) == 1
    assert "usage_sql" in plan.warnings[0] and "database keel_no_such_db" in plan.warnings[0]
    assert "does not exist" in plan.warnings[0]  # the driver's own message
    assert store.plan([Entity(name="customer", join_keys=["customer_id"]), view]).warnings == []

    entity = pd.DataFrame({"customer_id": [3], "event_timestamp": ["2026-01-02T12:00:00Z"]})
    with pytest.raises(InvalidInput) as caught:
        store.get_historical_features(entity, ["usage_sql:calls"])
    assert "host 127.0.0.1, database keel_no_such_db" in caught.value.message
    assert "does not exist" in caught.value.message
    assert caught.value.field == "usage_sql.source.url"
    store.close()
