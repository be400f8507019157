"""The one YAML-or-JSON reader of policy documents (deployments, gates, triggers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel._documents import load_document
from keel.automation.gates.policy import load_policy as load_gate_policy
from keel.automation.triggers.models import parse_trigger
from keel.deploy.policy import load_policy as load_deployment_policy
from keel.errors import BadRequest, InvalidInput

DEEP = "[" * 100_000 + "]" * 100_000


def test_yaml_and_json_read_alike() -> None:
    assert load_document("a: 1\nb: [x]\n", field="f") == {"a": 1, "b": ["x"]}
    assert load_document('{"a": 1, "b": ["x"]}', field="f") == {"a": 1, "b": ["x"]}


@pytest.mark.parametrize("text", [DEEP, '{"a": ' + DEEP + "}"])  # YAML, then JSON
def test_nested_too_deeply_is_a_bad_request_naming_the_field(text: str) -> None:
    with pytest.raises(BadRequest, match="nested too deeply") as err:
        load_document(text, field="policy")
    assert err.value.field == "policy"


def test_not_utf8_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="not UTF-8"):
        load_document(b"name: caf\xe9 \xff", field="body")


def test_broken_text_is_invalid_input_naming_the_document() -> None:
    with pytest.raises(InvalidInput, match="^policy: not valid YAML or JSON") as err:
        load_document("a: [1, 2", field="policy")
    assert err.value.field == "policy" and not isinstance(err.value, BadRequest)


def test_every_policy_reader_refuses_deep_text_without_a_recursion_error(tmp_path: Path) -> None:
    gates = tmp_path / "gates.yaml"
    gates.write_text(DEEP)
    for read in (load_deployment_policy, parse_trigger, lambda _: load_gate_policy(gates)):
        with pytest.raises(BadRequest, match="nested too deeply"):
            read(DEEP)


def test_every_reader_words_an_unknown_key_alike_naming_it(tmp_path: Path) -> None:
    # One helper (keel._models.error_reason) words it for policies, gates and triggers.
    trigger = (Path(__file__).parent / "automation/fixtures/trigger_seed004.yaml").read_text()
    gates = tmp_path / "gates.yaml"
    gates.write_text("fairness:\n  max_dp: 0.1\n")
    arms = "[{version: 1, role: primary}, {version: 2, role: shadow}]"
    deployment = f"name: d\nmodel: m\nstrategy: shadow\narms: {arms}\n"
    cases = [
        (lambda: parse_trigger(trigger.replace("below: 0.78", "floor: 0.78")), "any[0].floor"),
        (lambda: load_gate_policy(gates), "fairness.max_dp"),
        (lambda: load_deployment_policy(f"{deployment}bogus: 1\n"), "bogus"),
    ]
    for read, field in cases:
        with pytest.raises(InvalidInput) as err:
            read()
        key = field.rsplit(".", 1)[-1].rsplit("]", 1)[-1].lstrip(".")
        assert err.value.field == field, err.value.message
        assert err.value.message.endswith(f"{field}: unknown key {key!r}"), err.value.message
