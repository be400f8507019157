"""R-TRN-07/08 trigger presets: every preset, printed as YAML by ``keel triggers preset
show``, is accepted by the real trigger validator (``keel triggers apply``, the real
``retrain.run`` check of its train function) on the churn model; cadences are the
requirement's; a placeholder train function is refused naming the key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from keel.automation.cron import next_fire
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.automation.triggers import parse_trigger
from keel.automation.triggers.presets import PRESETS, get_preset
from keel.cli.main import app
from keel.errors import InvalidInput

Env = tuple[Any, Any]
TRAIN = "tests.automation.retrain_train:train"
FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()
#: R-TRN-07's cadences by domain, R-TRN-08's by workload, in days between firings
CADENCE_DAYS = {
    "ad-click": {1},
    "fraud": {7},
    "demand-forecasting": {28, 29, 30, 31},
    "medical-imaging": {90, 91, 92},
    "image-classifier": {28, 29, 30, 31},
    "language-model": {7},
    "recommender": {1},
    "keyword-spotter": {90, 91, 92},
    "churn": {28, 29, 30, 31},
}


def _env(services: Any) -> dict[str, str | None]:
    home = str(services.settings.home)
    return {"KEEL_HOME": home, "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}


def test_every_preset_applies_through_the_cli_with_the_real_validator(
    trigger_env: Env, tmp_path: Path
) -> None:
    services = trigger_env[0]
    register_retrain_kind()  # the real kind's check (the fixture records jobs otherwise)
    env = _env(services)
    listed = runner.invoke(app, ["triggers", "preset", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [p["name"] for p in json.loads(listed.stdout)] == list(PRESETS)
    for name in PRESETS:
        args = ["--model", "churn", "--train", TRAIN, "--label", "churn"]
        shown = runner.invoke(app, ["triggers", "preset", "show", name, *args], env=env)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.startswith(f"# keel trigger preset {name!r}")
        path = tmp_path / f"{name}.yaml"
        path.write_text(shown.stdout)
        applied = runner.invoke(app, ["triggers", "apply", "-f", str(path)], env=env)
        assert applied.exit_code == 0, (name, applied.output)
        stored = services.triggers.get(f"churn-{name}-retrain")
        assert stored.retrain["train"] == TRAIN and stored.model == "churn"
        assert yaml.safe_load(shown.stdout) == get_preset(name, "churn", TRAIN, "churn")


def test_a_placeholder_train_function_is_refused_naming_the_key(trigger_env: Env) -> None:
    services = trigger_env[0]
    register_retrain_kind()
    with pytest.raises(InvalidInput) as caught:
        services.triggers.apply(get_preset("fraud", "churn"))
    assert caught.value.field == "retrain.train"
    missing = runner.invoke(app, ["triggers", "preset", "show", "nope"], env=_env(services))
    assert missing.exit_code == 1 and "known: ad-click, fraud" in missing.output


def test_cadences_are_the_requirements() -> None:
    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for name, preset in PRESETS.items():
        [schedule] = [c for c in preset.trigger["any"] if c["metric"] == "schedule"]
        first = next_fire(schedule["cron"], start)
        gaps = set()
        for _ in range(4):
            second = next_fire(schedule["cron"], first)
            gaps.add((second - first).days)
            first = second
        assert gaps <= CADENCE_DAYS[name], (name, gaps)


def test_the_churn_preset_is_seed_004_as_written() -> None:
    seed = yaml.safe_load((FIXTURES / "trigger_seed004.yaml").read_text())
    assert get_preset("churn")["any"] == seed["any"]
    assert get_preset("churn")["retrain"]["gates"] == {"floor": {"min_auc": 0.80}}  # R-TRN-06


def test_high_traffic_daily_presets_avoid_peak_hours() -> None:
    """R-TRN-21: ad-click and recommender models retrain daily on busy traffic."""
    for name in ("ad-click", "recommender"):
        spec = parse_trigger(PRESETS[name].trigger)
        assert spec.timing is not None and spec.timing.peak is not None
        assert spec.timing.peak.percentile == 80
