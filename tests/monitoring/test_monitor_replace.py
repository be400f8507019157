"""Replacing a monitor keeps the rules incident resolutions added to it.

A resolution adds its rule with ``source: decision N``; a later ``create`` of the same
name (REST ``POST /v1/monitors``, ``Client.create_monitor``, ``keel monitor create``)
used to store the new spec's rules only, so the lesson of the incident was lost. A
replace now keeps those rules unless ``drop_resolution_rules`` is passed (rules the new
spec lists are kept either way), says which were kept and dropped, and refuses a merged
result past 100 rules with a 422 naming ``rules``, storing nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.monitoring.conftest import FEATURES
from typer.testing import CliRunner

from keel import Client
from keel.cli.main import app
from keel.errors import InvalidInput
from keel.monitoring.models import MonitorSpec
from keel.monitoring.rules import parse_rule
from keel.services import Services

MONITOR = "churn-quality"
OWN_RULE = "max(tenure) > 100"  # written by a person with the spec
LESSON = "null_share(total_charges) > 0.01"  # added by resolving an incident
runner = CliRunner()


def _resolve(services: Services, client: Client, rule: str = LESSON) -> str:
    """Resolve a fresh rollback incident of churn with ``rule`` on the monitor; its source."""
    incident = services.decisions.record("rollback", "churn", "rolled back").id or 0
    client.resolve_decision(incident, monitor=MONITOR, rule=rule)
    return f"decision {incident}"


def _remote(services: Services) -> Any:
    return services.settings.model_copy(update={"home": services.settings.home / "remote"})


def _rules(services: Services) -> list[tuple[str, str | None]]:
    return [(r.text, r.source) for r in services.monitors.get(MONITOR).rules]


def _rule(text: str) -> dict[str, Any]:
    """A rule as a spec lists it (``{feature, statistic, op, threshold, source}``)."""
    return parse_rule(text).model_dump()


def _lesson(source: str) -> dict[str, Any]:
    return {**_rule(LESSON), "source": source}


def test_a_replace_keeps_resolution_rules_unless_told_to_drop_them(
    services: Services, client: Client, churn_model: Any
) -> None:
    """Both transports (the ``client`` fixture) give the same answers on both stores."""
    client.create_monitor(MONITOR, "churn", window="2h", rules=[_rule(OWN_RULE)])
    source = _resolve(services, client)
    assert _rules(services) == [(OWN_RULE, None), (LESSON, source)]

    # a replace that does not mention the lesson keeps it, and says so
    replaced = client.create_monitor(
        MONITOR, "churn", window="6h", rules=[_rule("min(tenure) < 0")]
    )
    assert replaced.window == "6h"
    assert [(r.text, r.source) for r in replaced.rules] == [
        ("min(tenure) < 0", None),
        (LESSON, source),
    ]
    assert replaced.resolution_rules.model_dump() == {"kept": [_lesson(source)], "dropped": []}
    assert _rules(services) == [("min(tenure) < 0", None), (LESSON, source)]

    # listed again without its source: kept once, its origin kept too
    listed = client.create_monitor(MONITOR, "churn", window="6h", rules=[_rule(LESSON)])
    assert [(r.text, r.source) for r in listed.rules] == [(LESSON, source)]
    assert listed.resolution_rules.model_dump() == {"kept": [_lesson(source)], "dropped": []}

    # listed and dropped: the flag drops only what the new spec leaves out
    kept = client.create_monitor(
        MONITOR, "churn", window="6h", rules=[_rule(LESSON)], drop_resolution_rules=True
    )
    assert [(r.text, r.source) for r in kept.rules] == [(LESSON, source)]
    assert kept.resolution_rules.model_dump() == {"kept": [_lesson(source)], "dropped": []}

    dropped = client.create_monitor(MONITOR, "churn", window="6h", drop_resolution_rules=True)
    assert dropped.rules == [] and _rules(services) == []
    assert dropped.resolution_rules.model_dump() == {"kept": [], "dropped": [_lesson(source)]}

    # a new monitor has nothing to keep; a plain get carries no replace report
    fresh = client.create_monitor("other", "churn", window="2h")
    assert fresh.resolution_rules.model_dump() == {"kept": [], "dropped": []}
    assert "resolution_rules" not in client.get_monitor(MONITOR).model_dump()


def test_the_merged_rules_are_held_to_100_and_a_refusal_stores_nothing(
    services: Services, client: Client, churn_model: Any
) -> None:
    client.create_monitor(MONITOR, "churn", window="2h")
    _resolve(services, client)
    before = services.monitors.get(MONITOR)
    hundred = [_rule(f"max(tenure) > {n}") for n in range(100)]
    with pytest.raises(InvalidInput) as caught:
        client.create_monitor(MONITOR, "churn", window="6h", rules=hundred)
    assert caught.value.field == "rules"
    assert "101" in caught.value.message and "drop_resolution_rules" in caught.value.message
    assert services.monitors.get(MONITOR) == before
    stored = client.create_monitor(
        MONITOR, "churn", window="6h", rules=hundred, drop_resolution_rules=True
    )
    assert len(stored.rules) == 100 and len(stored.resolution_rules.dropped) == 1


def test_a_kept_rule_the_new_spec_cannot_check_is_refused_naming_rules(
    services: Services, churn_model: Any
) -> None:
    """A new reference without the lesson's column: refused, naming the kept rule."""
    with Client(settings=services.settings) as client:
        client.create_monitor(MONITOR, "churn", window="2h")
        source = _resolve(services, client, "null_share(contract) > 0.01")
        client.register_dataset("numbers-only", pd.DataFrame({f: [1.0, 2.0] for f in FEATURES}))
        before = services.monitors.get(MONITOR)
        with pytest.raises(InvalidInput) as caught:
            client.create_monitor(MONITOR, "churn", reference="numbers-only@1")
        assert caught.value.field == "rules" and source in caught.value.message
        assert services.monitors.get(MONITOR) == before


def test_rest_replace_over_a_live_server(
    services: Services, live_server: str, churn_model: Any
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        spec = {"name": MONITOR, "model": "churn", "window": "2h", "rules": []}
        assert http.post("/v1/monitors", json=spec).status_code == 201
        with Client(live_server, settings=_remote(services)) as client:
            source = _resolve(services, client)
        before = http.get(f"/v1/monitors/{MONITOR}").json()

        too_many = {**spec, "rules": [_rule(f"max(tenure) > {n}") for n in range(100)]}
        refused = http.post("/v1/monitors", json=too_many)
        assert refused.status_code == 422, refused.text[:300]
        assert refused.json()["error"]["field"] == "rules"
        assert http.get(f"/v1/monitors/{MONITOR}").json() == before

        kept = http.post("/v1/monitors", json=spec)
        assert kept.status_code == 201, kept.text
        assert kept.json()["resolution_rules"] == {"kept": [_lesson(source)], "dropped": []}
        assert [r["source"] for r in kept.json()["rules"]] == [source]

        flag = {"drop_resolution_rules": "true"}
        dropped = http.post("/v1/monitors", json=spec, params=flag)
        assert dropped.status_code == 201, dropped.text
        assert dropped.json()["resolution_rules"] == {"kept": [], "dropped": [_lesson(source)]}
        assert http.get(f"/v1/monitors/{MONITOR}").json()["rules"] == []
        bad = http.post("/v1/monitors", json=spec, params={"drop_resolution_rules": "maybe"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "drop_resolution_rules"


def _together(*calls: Callable[[], Any]) -> list[BaseException]:
    """Run ``calls`` in threads released by one barrier; what they raised."""
    start, errors = threading.Barrier(len(calls)), []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_replaces_racing_resolutions_lose_no_lesson(services: Services, churn_model: Any) -> None:
    """A replace and a resolution at once, each through its own engine: the resolution's
    rule survives whichever comes first (the replace merges under the monitor's lock)."""
    budget, rounds, expected = time.monotonic() + 30, 0, []
    with ExitStack() as stack:
        replacer, resolver = (
            stack.enter_context(Client(settings=services.settings)) for _ in range(2)
        )
        replacer.create_monitor(MONITOR, "churn", window="2h")
        while rounds < 8 and time.monotonic() < budget:
            incident = services.decisions.record("rollback", "churn", f"round {rounds}").id or 0
            rule = f"null_share(tenure) > {rounds + 1}e-3"
            replace = partial(replacer.create_monitor, MONITOR, "churn", window=f"{rounds + 2}h")
            resolve = partial(resolver.resolve_decision, incident, monitor=MONITOR, rule=rule)
            assert _together(replace, resolve) == []
            expected.append((parse_rule(rule).text, f"decision {incident}"))
            assert _rules(services) == expected, f"round {rounds}: a lesson was lost"
            rounds += 1
    assert rounds >= 3


def test_cli_replace_reports_kept_and_dropped_lessons(
    services: Services, churn_model: Any, tmp_path: Path
) -> None:
    env = {"KEEL_HOME": str(services.settings.home), "KEEL_SERVER_URL": None}
    env["KEEL_DATABASE_URL"] = services.settings.database_url  # None: the home's SQLite

    def cli(*args: str) -> Any:
        return runner.invoke(app, ["monitor", "create", MONITOR, *args], env=env)

    assert cli("--model", "churn", "--window", "2h").exit_code == 0
    with Client(settings=services.settings) as client:
        source = _resolve(services, client)

    kept = cli("--model", "churn", "--window", "6h")
    assert kept.exit_code == 0, kept.output
    assert f"kept resolution rules: {LESSON} ({source})" in kept.stdout
    assert _rules(services) == [(LESSON, source)]

    dropped = cli("--model", "churn", "--window", "6h", "--drop-resolution-rules", "--json")
    assert dropped.exit_code == 0, dropped.output
    body = json.loads(dropped.stdout)
    assert body["resolution_rules"] == {"kept": [], "dropped": [_lesson(source)]}
    assert _rules(services) == []

    helped = runner.invoke(app, ["monitor", "create", "--help"], env=env)
    assert "--drop-resolution-rules" in helped.stdout


def test_a_spec_listing_a_lesson_keeps_one_copy(services: Services, churn_model: Any) -> None:
    services.monitors.create(MonitorSpec(name=MONITOR, model="churn", window="2h"))
    with Client(settings=services.settings) as client:
        source = _resolve(services, client)
    # the spec as GET returns it (with the source) is a replace that changes nothing
    spec = MonitorSpec(
        **services.monitors.get(MONITOR).model_dump(include=set(MonitorSpec.model_fields))
    )
    again = services.monitors.create(spec)
    assert [(r.text, r.source) for r in again.rules] == [(LESSON, source)]
