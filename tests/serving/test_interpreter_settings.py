"""Interpreter settings held while gateways run (keel.serving.switching): the collector's
first-generation threshold is raised, and the heap frozen, by the first gateway and
restored by the last."""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest
from tests.serving.conftest import live_gateway

from keel.config import Settings
from keel.serving.switching import ProcessSetting


def test_gateways_raise_the_collectors_threshold_while_they_run(
    make_settings: Callable[..., Settings],
) -> None:
    before = gc.get_threshold()
    with live_gateway(make_settings(serving_gc_threshold=10_000)):
        assert gc.get_threshold() == (10_000, *before[1:])
        with live_gateway(make_settings(serving_gc_threshold=5_000)):
            assert gc.get_threshold()[0] == 10_000  # the larger stands
        assert gc.get_threshold()[0] == 10_000  # the first still runs
    assert gc.get_threshold() == before
    with live_gateway(make_settings(serving_gc_threshold=0)):
        assert gc.get_threshold() == before  # 0: left alone


def test_gateways_freeze_the_heap_while_they_run_unless_told_not_to(
    make_settings: Callable[..., Settings],
) -> None:
    assert gc.get_freeze_count() == 0
    with live_gateway(make_settings(serving_gc_freeze=True)):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # libraries and all: out of the collector's sight
        with live_gateway(make_settings(serving_gc_freeze=True)):
            assert gc.get_freeze_count() >= frozen
        assert gc.get_freeze_count() >= frozen  # the first still runs
    assert gc.get_freeze_count() == 0  # the last to stop gives it back
    with live_gateway(make_settings(serving_gc_freeze=False)):
        assert gc.get_freeze_count() == 0  # false: left alone


def test_a_process_setting_is_restored_by_its_last_holder() -> None:
    value = [1.0]
    setting = ProcessSetting(lambda: value[0], lambda v: value.__setitem__(0, v), max)
    setting.hold(5.0)
    setting.hold(3.0)
    assert value[0] == 5.0
    setting.release()
    assert value[0] == 5.0
    setting.release()
    assert value[0] == 1.0


@pytest.mark.parametrize("bad", [-1, 10_000_001, "lots"])
def test_a_bad_threshold_is_refused_naming_the_setting(bad: object) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="serving_gc_threshold"):
        Settings(serving_gc_threshold=bad)
