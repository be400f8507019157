"""Implicit feedback signals (R-TRN-23): a model's mapping from observed behaviour to labels.

A model registers which signals it hears and what each one means, e.g.
``{watched: 1, skipped: 0, clicked: 1, dwell_seconds: {threshold: 30}}``. A feedback item
may then carry ``signal`` (and ``value`` for a threshold signal) instead of ``label``; the
feedback store converts it with the mapping when it is written and keeps the signal, its
value, the derived label and the source (``implicit``) beside each other. A fixed signal
gives its label (a number, string or boolean); a threshold signal gives ``above`` (default
1) when its value is at least ``threshold`` and ``below`` (default 0) otherwise.

The mapping is stored on the registered model as the tag ``keel.signals`` (JSON), so it
needs no table of its own and travels with the model; :func:`set_signals` validates it
first, so a stored mapping is always a valid one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keel._models import invalid_input
from keel.errors import InvalidInput

__all__ = [
    "SIGNALS_TAG",
    "SignalMap",
    "ThresholdSignal",
    "get_signals",
    "implicit_label",
    "parse_signals",
    "set_signals",
    "signal_lookup",
]

#: The registered model's tag holding its mapping (JSON).
SIGNALS_TAG = "keel.signals"
#: A label a signal may give: what an explicit label may be.
Label = bool | int | float | str


class ThresholdSignal(BaseModel):
    """A signal with a number (``dwell_seconds: 42``): ``above`` when the value is at least
    ``threshold``, else ``below``."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    above: Label = 1
    below: Label = 0

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        return value


class SignalMap(BaseModel):
    """A model's signals by name: a fixed label, or a :class:`ThresholdSignal`."""

    model_config = ConfigDict(extra="forbid")

    signals: dict[str, ThresholdSignal | Label] = Field(min_length=1)

    @field_validator("signals")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, label in value.items():
            if not name or len(name) > 64:
                raise ValueError(f"signal name {name!r} must be 1-64 characters")
            if isinstance(label, float) and not math.isfinite(label):
                raise ValueError(f"{name}: the label must be finite")
        return value

    def label(self, signal: Any, value: Any, where: str) -> tuple[Label, float | None]:
        """The label ``signal`` (with ``value``) stands for, and the value as a number.

        InvalidInput naming ``<where>.signal`` for a signal the model does not declare,
        ``<where>.value`` for a threshold signal without a finite number or a fixed signal
        given one (a value it would ignore is more likely a mistake than intended).
        """
        if not isinstance(signal, str) or signal not in self.signals:
            known = ", ".join(sorted(self.signals))
            raise InvalidInput(
                f"{where}.signal: unknown signal {signal!r} (this model's signals: {known})",
                field=f"{where}.signal",
            )
        rule = self.signals[signal]
        if not isinstance(rule, ThresholdSignal):
            if value is not None:
                raise InvalidInput(
                    f"{where}.value: signal {signal!r} is a fixed label and takes no value",
                    field=f"{where}.value",
                )
            return rule, None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(
                f"{where}.value: signal {signal!r} needs a number (its threshold is "
                f"{rule.threshold:g})",
                field=f"{where}.value",
            )
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInput(f"{where}.value: must be finite", field=f"{where}.value")
        return (rule.above if number >= rule.threshold else rule.below), number

    def to_dict(self) -> dict[str, Any]:
        """The mapping as it is written in YAML."""
        return {
            name: rule.model_dump() if isinstance(rule, ThresholdSignal) else rule
            for name, rule in self.signals.items()
        }


def parse_signals(mapping: Any) -> SignalMap:
    """A checked mapping; InvalidInput naming ``signals.<name>`` (or ``signals``)."""
    if isinstance(mapping, Mapping) and set(mapping) == {"signals"}:
        mapping = mapping["signals"]  # the YAML file may wrap the mapping in ``signals:``
    if not isinstance(mapping, Mapping):
        raise InvalidInput("signals: expected a mapping of signal name → label", field="signals")
    try:
        return SignalMap.model_validate({"signals": dict(mapping)})
    except ValidationError as exc:
        error = invalid_input(exc)
        raise InvalidInput(error.message, field=error.field) from None


def set_signals(registry: Any, model: str, mapping: Any) -> SignalMap:
    """Validate ``mapping`` and store it on ``model`` (NotFound for an unknown model)."""
    checked = parse_signals(mapping)
    registry.set_model_tag(model, SIGNALS_TAG, json.dumps(checked.to_dict(), sort_keys=True))
    return checked


def get_signals(registry: Any, model: str) -> SignalMap | None:
    """``model``'s mapping, or None when it has none (NotFound for an unknown model)."""
    text = registry.get_model(model).tags.get(SIGNALS_TAG)
    return None if text is None else parse_signals(json.loads(text))


def signal_lookup(registry: Any) -> Callable[[str], SignalMap | None]:
    """What the feedback store asks for a model's mapping: None for a model without one,
    or not registered (the feedback item then names its ``signal`` as unusable)."""
    from keel.errors import NotFound

    def lookup(model: str) -> SignalMap | None:
        try:
            return get_signals(registry, model)
        except NotFound:
            return None

    return lookup


def implicit_label(
    where: str,
    item: Mapping[str, Any],
    model: str | None,
    signals: Callable[[str], SignalMap | None],
) -> tuple[Label, float | None]:
    """The label of a feedback item that carries ``signal`` (and ``value``) for ``model``,
    and the value as a number; InvalidInput naming the item's field otherwise."""
    if "label" in item:
        raise InvalidInput(f"{where}: give label or signal, not both", field=f"{where}.signal")
    if model is None:  # the mapping is the model's: a signal means nothing without one
        raise InvalidInput(f"{where}.model: required with a signal", field=f"{where}.model")
    mapping = signals(model)
    if mapping is None:
        raise InvalidInput(
            f"{where}.signal: model {model!r} has no signal mapping "
            f"(keel models signals set {model} -f signals.yaml)",
            field=f"{where}.signal",
        )
    return mapping.label(item["signal"], item.get("value"), where)
