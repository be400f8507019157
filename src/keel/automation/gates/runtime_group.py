"""The ``runtime`` gate group (R-CICD-08) as the runner runs it: pick the reference, then
each enabled check of :mod:`keel.automation.gates.runtime` in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from keel.automation.gates.policy import RuntimePolicy
from keel.automation.gates.result import GateResult, cannot_compute, skipped
from keel.automation.gates.runtime import (
    Reference,
    edge_gate,
    equivalence_gate,
    memory_gate,
    no_reference,
    onnx_reference,
    versions_gate,
    warmup_gate,
)
from keel.errors import InvalidInput

if TYPE_CHECKING:
    from keel.automation.gates.runner import _Gates

__all__ = ["runtime_gates"]


def _reference(g: _Gates, policy: RuntimePolicy) -> tuple[Reference | None, str, bool]:
    """(reference, why there is none, whether that absence is a failure)."""
    if policy.equivalence.reference == "champion":
        if g.champion is None:
            return None, "no champion to compare with (runtime.equivalence.reference)", False
        return Reference(g.champion, "champion"), "", False
    try:
        reference, why = onnx_reference(g.challenger)
    except InvalidInput as exc:  # a convertible flavor the converter refused: a finding
        return None, f"cannot convert to ONNX: {exc.message}", True
    return reference, why, False


def runtime_gates(
    g: _Gates,
    policy: RuntimePolicy,
    training: pd.DataFrame | None,
    signature: dict[str, Any] | None,
    threshold: float,
    warm: dict[str, Any] | None,
) -> list[GateResult]:
    """``runtime.equivalence``, ``.edge``, ``.memory``, ``.warmup``, ``.versions``."""
    off = "disabled by policy"
    eq: GateResult = skipped("runtime.equivalence", off)
    edge: GateResult = skipped("runtime.edge", off)
    if policy.equivalence.enabled or policy.edge.enabled:
        reference, why, failed = _reference(g, policy)
        if reference is None:
            absent = (
                (cannot_compute("runtime.equivalence", why), cannot_compute("runtime.edge", why))
                if failed
                else no_reference(why)
            )
            eq = absent[0] if policy.equivalence.enabled else eq
            edge = absent[1] if policy.edge.enabled else edge
        else:
            if policy.equivalence.enabled:
                eq = g.scored("runtime.equivalence") or equivalence_gate(
                    g.s_new, reference, g.features, threshold, policy.equivalence, g.positive
                )
            if policy.edge.enabled:
                rows = (
                    None if training is None else training.drop(columns=[g.label], errors="ignore")
                )
                # the registered signature says which columns may be missing
                signed = signature or getattr(g.challenger, "signature", None)
                edge = edge_gate(
                    g.challenger, reference, g.features, rows, signed,
                    g.policy.stress, threshold, policy.edge, g.positive,
                )  # fmt: skip
    gates = [eq, edge]
    gates.append(
        memory_gate(g.challenger, g.features, policy.memory)
        if policy.memory.enabled
        else skipped("runtime.memory", "disabled by policy")
    )
    gates.append(
        warmup_gate(warm, policy.warmup)
        if warm is not None
        else skipped("runtime.warmup", "disabled by policy")
    )
    gates.append(
        versions_gate(g.challenger)
        if policy.versions.enabled
        else skipped("runtime.versions", "disabled by policy")
    )
    return gates
