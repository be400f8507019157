"""Every reader of a user's document turns pydantic's errors into InvalidInput the same way.

A gate policy, a deployment policy, a feature definition file and ``keel monitor create -f``
all go through :func:`keel._models.invalid_input`: the field is the error's path
(``a.b[1].c``), the message is ``<field>: <reason>`` (an unknown key named, no ``Value
error,`` prefix, a bad literal with the value it got, a validator's own InvalidInput joined
to the path of the model that raised it), and ``detail.errors`` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from typer.testing import CliRunner

from keel._models import invalid_input
from keel.automation.gates import parse_policy as parse_gate_policy
from keel.cli.main import app
from keel.deploy.policy import parse_policy as parse_deploy_policy
from keel.errors import InvalidInput
from keel.features.definitions import load_yaml

_ARMS = [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}]
_DEPLOY: dict[str, Any] = {"name": "d", "model": "m", "strategy": "canary", "arms": _ARMS}
_VIEW: dict[str, Any] = {
    "name": "account",
    "entities": ["customer"],
    "source": {"type": "file", "path": "a.parquet"},
    "features": {"tenure": "int64"},
}
_LITERAL = "Input should be"


def _gate(document: dict[str, Any]) -> Callable[[Path], InvalidInput]:
    return lambda _tmp: _raised(lambda: parse_gate_policy(document))


def _deploy(document: dict[str, Any]) -> Callable[[Path], InvalidInput]:
    return lambda _tmp: _raised(lambda: parse_deploy_policy({**_DEPLOY, **document}))


def _features(view: dict[str, Any]) -> Callable[[Path], InvalidInput]:
    def read(tmp: Path) -> InvalidInput:
        path = tmp / "features.yaml"
        path.write_text(yaml.safe_dump({"feature_views": [{**_VIEW, **view}]}))
        return _raised(lambda: load_yaml(path))

    return read


def _monitor(spec: dict[str, Any]) -> Callable[[Path], InvalidInput]:
    """``keel monitor create`` with a bad --file: exit 2 and ``error: <message> (field: x)``."""

    def read(tmp: Path) -> InvalidInput:
        path = tmp / "monitor.yaml"
        path.write_text(yaml.safe_dump(spec))
        env = {"KEEL_HOME": str(tmp / "home"), "KEEL_SERVER_URL": None, "KEEL_DATABASE_URL": None}
        args = ["monitor", "create", "m", "--model", "churn", "-f", str(path)]
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert line.count("\n") == 0 and "Traceback" not in result.output, result.output
        assert line.startswith("error: ") and line.endswith(")"), line
        message, field = line.removeprefix("error: ")[:-1].rsplit(" (field: ", 1)
        return InvalidInput(message, field=field)

    return read


def _raised(call: Callable[[], object]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call()
    return caught.value


_UNKNOWN_ARM = {**_ARMS[1], "colour": 1}
_BOTH_TARGETS = {**_ARMS[1], "alias": "next"}
_CADENCES = "'hourly', 'daily', 'weekly', 'streaming' or 'manual'"
_STRATEGIES = "'shadow', 'canary', 'ab' or 'blue_green'"

#: (case, read, field, reason start): one row per reader and kind of error
CASES: list[tuple[str, Callable[[Path], InvalidInput], str, str]] = [
    # an unknown key
    ("gate-unknown", _gate({"fairness": {"max_dp": 0.1}}),
     "fairness.max_dp", "unknown key 'max_dp'"),
    ("deploy-unknown", _deploy({"arms": [_ARMS[0], _UNKNOWN_ARM]}),
     "arms[1].colour", "unknown key 'colour'"),
    ("features-unknown", _features({"colour": "red"}),
     "feature_views[0].colour", "unknown key 'colour'"),
    ("monitor-unknown", _monitor({"colour": "red"}), "colour", "unknown key 'colour'"),
    # a bad item of a nested list
    ("gate-item", _gate({"fairness": {"sensitive_columns": ["gender", 3]}}),
     "fairness.sensitive_columns[1]", "Input should be a valid string"),
    ("deploy-item", _deploy({"steps": [5, "x", 100]}),
     "steps[1]", "Input should be a valid number"),
    ("features-item", _features({"entities": ["customer", 3]}),
     "feature_views[0].entities[1]", "Input should be a valid string"),
    ("monitor-item", _monitor({"features": ["tenure", 3]}),
     "features[1]", "Input should be a valid string"),
    # a validator's own error: an InvalidInput naming a field of its model, or a ValueError
    ("gate-validator", _gate({"cost": {"cost_fp": 1}}),
     "cost", "cost_fn is required when the other cost is given"),
    ("deploy-validator", _deploy({"arms": [_ARMS[0], _BOTH_TARGETS]}),
     "arms[1].version", "give exactly one of version or alias"),
    ("features-validator", _features({"source": {"type": "sql", "url": "sqlite://"}}),
     "feature_views[0].source", "give exactly one of table or query"),
    ("monitor-validator", _monitor({"performance_thresholds": {"accuracy": {}}}),
     "performance_thresholds.accuracy", "give drop and/or relative_drop"),
    # a value outside a Literal: the value it got is named
    ("gate-literal", _gate({"margin": {"kind": "percent"}}),
     "margin.kind", f"{_LITERAL} 'absolute' or 'relative', got 'percent'"),
    ("deploy-literal", _deploy({"strategy": "big_bang"}),
     "strategy", f"{_LITERAL} {_STRATEGIES}, got 'big_bang'"),
    ("features-literal", _features({"cadence": "monthly"}),
     "feature_views[0].cadence", f"{_LITERAL} {_CADENCES}, got 'monthly'"),
    ("monitor-literal", _monitor({"task": "ranking"}),
     "task", f"{_LITERAL} 'classification' or 'regression', got 'ranking'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("read", "field", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_every_document_reader_words_a_bad_input_alike(
    tmp_path: Path, read: Callable[[Path], InvalidInput], field: str, reason: str
) -> None:
    error = read(tmp_path)
    assert error.field == field, error.message
    assert error.message.startswith(f"{field}: {reason}"), error.message
    assert "Value error" not in error.message and "policy: " not in error.message


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: int = 0
    high: int = 1

    @model_validator(mode="after")
    def _ordered(self) -> _Inner:
        if self.low > self.high:
            # worded as parse_duration_s words its own: the field already leads the message
            raise InvalidInput(f"high: must be >= low ({self.low})", field="high")
        return self


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[_Inner] = []


def test_a_nested_invalid_input_names_its_field_under_the_model_once() -> None:
    with pytest.raises(ValidationError) as caught:
        _Outer.model_validate({"items": [{}, {"low": 5}], "x": 1})
    error = invalid_input(caught.value, whole="document")
    assert error.field == "items[1].high"
    assert error.message == "items[1].high: must be >= low (5)"
    assert error.detail["errors"] == [
        {"field": "items[1].high", "message": "must be >= low (5)"},
        {"field": "x", "message": "unknown key 'x'"},
    ]
