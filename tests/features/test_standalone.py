"""``FeatureStore(settings)`` stands alone: its own engine and schema, not the composition root.

It used to call ``keel.services.open_services`` (every service, the job queue, the
deployment wiring) from inside ``keel.features``, which ``keel.services`` imports: a cycle
(#15.29).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests._connections import assert_no_connection_open, named_url

from keel.config import Settings
from keel.errors import InvalidInput
from keel.features import FeatureStore
from keel.features.invalidation import entity_invalidator
from keel.store.sql.migrate import current_revision, head_revision


def test_standalone_store_opens_no_services(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from keel.config import Settings\n"
        "from keel.features import FeatureStore\n"
        f"store = FeatureStore(Settings(home={str(tmp_path / 'keel')!r}))\n"
        "print(store.list_definitions())\n"
        "store.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('keel.services', 'keel.deploy'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_standalone_store_upgrades_the_schema_and_releases_the_engine(tmp_path: Path) -> None:
    store = FeatureStore(Settings(home=tmp_path / "keel"))
    engine = store._owned_engine
    assert engine is not None and current_revision(engine) == head_revision()
    store.close()
    assert engine.pool.checkedout() == 0


def test_standalone_store_names_an_unusable_home(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(InvalidInput) as caught:
        FeatureStore(Settings(home=blocker / "keel"))
    assert "KEEL_HOME" in caught.value.message


@pytest.mark.postgres
def test_standalone_store_that_fails_to_open_closes_its_engine(
    tmp_path: Path, postgres_url: str, postgres_schema_url: str
) -> None:
    # the engine opens (and migrates) first; the online store's setting is refused after
    url, name = named_url(postgres_schema_url)
    settings = Settings(home=tmp_path / "keel", database_url=url, features_online_store="redis")
    with pytest.raises(InvalidInput) as raised:
        FeatureStore(settings)
    assert raised.value.field == "redis_url"
    assert_no_connection_open(postgres_url, name)


def test_entity_invalidator_joins_keys_and_caps_the_events() -> None:
    sent: list[str | None] = []
    invalidate = entity_invalidator(sent.append, max_entities=3)
    invalidate("v", [{"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert sorted(e for e in sent if e) == ["1|x", "2|y"]
    sent.clear()
    invalidate("v", [{"a": i} for i in range(4)])
    assert sent == [None]
