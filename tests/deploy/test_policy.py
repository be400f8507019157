"""Deployment policies: the issue's minimal policy as written, defaults, errors naming fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keel.deploy.policy import DeploymentPolicy, load_policy, parse_policy
from keel.errors import InvalidInput

MINIMAL = """\
name: churn-live
model: churn
strategy: canary            # shadow | canary | ab | blue_green
arms:
  - {version: 1, role: primary}
  - {version: 2, role: canary}
steps: [5, 25, 50, 100]     # canary share per step, percent
min_samples_per_step: 200
min_dwell: 10m
guardrails:
  error_rate: {max_increase: 0.01}
  p99_latency: {max_ratio: 2.0, for: 5m}
  metric: {name: roc_auc, min_improvement: 0.02, relative: false}
"""


def _ab(arms: str, extra: str = "") -> str:
    return f"name: x\nmodel: m\nstrategy: ab\narms: {arms}\n{extra}"


def test_minimal_policy_accepted_as_written_with_defaults() -> None:
    policy = load_policy(MINIMAL)
    assert [(a.name, a.version, a.weight) for a in policy.arms] == [
        ("primary", 1, 95.0),
        ("canary", 2, 5.0),
    ]
    assert policy.steps == [5, 25, 50, 100] and policy.min_dwell_s == 600
    assert policy.guardrails.p99_latency.for_s == 300
    assert policy.guardrails.error_rate.max_increase == 0.01
    assert policy.guardrails.metric is not None and policy.guardrails.metric.min_improvement == 0.02
    assert policy.retention.keep_previous_s == 14 * 86_400 and policy.retention.then == "archive"
    assert policy.unit == "routing_key" and policy.analysis.method == "sequential"


def test_policy_json_equals_yaml_and_round_trips() -> None:
    policy = load_policy(MINIMAL)
    document = policy.to_document()
    assert load_policy(json.dumps(document)) == policy
    assert parse_policy(document) == policy


def test_ab_policy_defaults_equal_split_and_a_week() -> None:
    policy = load_policy(
        _ab(
            "[{alias: champion, role: primary}, {version: 2, role: challenger}, "
            "{version: 3, role: challenger}, {version: 4, role: shadow}]"
        )
    )
    assert [(a.name, a.weight) for a in policy.arms] == [
        ("primary", 33.34),
        ("challenger-1", 33.33),
        ("challenger-2", 33.33),
        ("shadow", 0.0),
    ]
    assert policy.min_duration_s == 7 * 86_400  # R-DEP-14


def test_shadow_and_blue_green_get_their_phase_defaults() -> None:
    shadow = load_policy(
        "name: s\nmodel: m\nstrategy: shadow\n"
        "arms: [{version: 1, role: primary}, {version: 2, role: shadow}]"
    )
    assert shadow.shadow is not None and shadow.shadow.duration_s == 86_400
    blue = load_policy(
        "name: b\nmodel: m\nstrategy: blue_green\nblue_green: {verify: 2m}\n"
        "arms: [{version: 1, role: primary}, {version: 2, role: challenger}]"
    )
    assert blue.blue_green is not None and blue.blue_green.verify_s == 120
    assert [a.weight for a in blue.arms] == [100.0, 0.0]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (MINIMAL.replace("max_increase", "max_inc"), "guardrails.error_rate.max_inc"),
        (MINIMAL + "colour: red\n", "colour"),
        (MINIMAL.replace("strategy: canary", "strategy: rolling"), "strategy"),
        (MINIMAL.replace("[5, 25, 50, 100]", "[5, 25, 20, 100]"), "steps[2]"),
        (MINIMAL.replace("[5, 25, 50, 100]", "[5, 25, 50]"), "steps[2]"),
        (MINIMAL.replace("[5, 25, 50, 100]", "[0, 100]"), "steps[0]"),
        (MINIMAL.replace("role: canary", "role: primary"), "arms[1].role"),
        (MINIMAL.replace("10m", "ten minutes"), "min_dwell"),
        (MINIMAL.replace("for: 5m", "for: -5m"), "guardrails.p99_latency.for"),
        (
            MINIMAL.replace("{version: 2, role: canary}", "{version: 2, alias: b, role: canary}"),
            "arms[1].version",
        ),
        (
            MINIMAL.replace("{version: 2, role: canary}", "{version: 1, role: canary}"),
            "arms[1].version",
        ),
        (
            MINIMAL.replace("{version: 2, role: canary}", "{version: 2, role: canary, weight: 10}"),
            "arms[1].weight",
        ),
        (MINIMAL.replace("role: canary", "role: challenger"), "arms[1].role"),
        (
            _ab(
                "[{version: 1, role: primary, weight: 50}, {version: 2, role: challenger, "
                "weight: 40}]"
            ),
            "arms[1].weight",
        ),
        (
            _ab("[{version: 1, role: primary, weight: 50}, {version: 2, role: challenger}]"),
            "arms[1].weight",
        ),
        (
            _ab("[{version: 1, role: primary}, {version: 2, role: challenger, weight: 120}]"),
            "arms[1].weight",
        ),
        (
            _ab(
                "[{version: 1, role: primary}, {version: 2, role: shadow, weight: 5}, "
                "{version: 3, role: challenger}]"
            ),
            "arms[1].weight",
        ),
        (
            _ab("[{version: 1, role: primary}, {version: 2, role: challenger}]", "steps: [1, 100]"),
            "steps",
        ),
        (_ab("[{version: 1, role: challenger}, {version: 2, role: challenger}]"), "arms"),
        (
            _ab(
                "[{version: 1, role: primary}, {version: 2, role: challenger}]",
                "analysis: {method: fixed_horizon}",
            ),
            "analysis.planned_samples_per_arm",
        ),
        ("- just\n- a list\n", "policy"),
        ("{not json", "policy"),
    ],
)
def test_bad_policy_names_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_policy(text)
    assert info.value.field == field, info.value.message
    assert info.value.message.startswith(field)
    assert info.value.status == 422


def test_unknown_key_message_names_the_key() -> None:
    with pytest.raises(InvalidInput) as info:
        load_policy(MINIMAL.replace("max_increase", "max_inc"))
    assert "unknown key 'max_inc'" in info.value.message


def test_policy_model_validates_when_built_directly() -> None:
    with pytest.raises(ValueError):
        DeploymentPolicy.model_validate(
            {
                "name": "x",
                "model": "m",
                "strategy": "canary",
                "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "primary"}],
            }
        )


#: Every duration of a policy: the shared Duration type alone refuses a negative one (no
#: ``ge=0`` beside it), with the grammar's reason, naming the key's path.
POLICY_DURATIONS = [
    "min_dwell",
    "max_step_duration",
    "min_duration",
    "guardrails.error_rate.for",
    "guardrails.p99_latency.for",
    "analysis.burn_in",
    "analysis.attribution_window",
    "shadow.duration",
    "blue_green.switch_after",
    "blue_green.verify",
    "retention.keep_previous",
]


def _canary() -> dict[str, Any]:
    """A valid canary policy as the JSON body of ``POST /v1/deployments``."""
    arms = [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}]
    return {"name": "x", "model": "m", "strategy": "canary", "arms": arms}


@pytest.mark.parametrize("path", POLICY_DURATIONS)
def test_a_negative_duration_is_refused_by_the_grammar(path: str) -> None:
    document = _canary()
    *parents, key = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[key] = -1
    with pytest.raises(InvalidInput) as info:
        parse_policy(document)
    assert (info.value.field, info.value.status) == (path, 422)
    assert info.value.message == (
        f"{path}: expected a whole, non-negative number of seconds or a duration like "
        "90s, 30m, 6h, 7d or 1w, got -1"
    )
