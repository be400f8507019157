"""What a validation run produces: one result per gate and the report that holds them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["GateResult", "ValidationReport", "cannot_compute", "judged", "skipped"]

Status = Literal["pass", "fail", "skipped"]


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's verdict: its headline number, the threshold, a one-line reason.

    ``value``/``threshold`` are None when the gate could not be computed (then it fails) or
    was skipped; ``numbers`` holds everything else the verdict rests on.
    """

    name: str
    status: Status
    reason: str
    value: float | None = None
    threshold: float | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether this gate does not block (a skip blocks only under a strict policy)."""
        return self.status != "fail"


def judged(
    name: str,
    ok: bool,
    reason: str,
    value: float | None,
    threshold: float | None,
    **numbers: Any,
) -> GateResult:
    """A computed gate: pass when ``ok``."""
    return GateResult(name, "pass" if ok else "fail", reason, value, threshold, numbers)


def cannot_compute(name: str, reason: str, **numbers: Any) -> GateResult:
    """A gate that was asked for but cannot be computed: it fails, never passes by default."""
    return GateResult(name, "fail", f"cannot compute: {reason}", None, None, numbers)


def skipped(name: str, reason: str) -> GateResult:
    """A gate the policy disabled or whose inputs were not declared."""
    return GateResult(name, "skipped", reason)


def _plain(value: Any) -> Any:
    # JSON has no NaN/inf: send None (the report is read by people and CI bots).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _plain(value.item())
    return value


@dataclass(slots=True)
class ValidationReport:
    """The gates of one challenger against one champion on one holdout.

    ``passed`` is true when no gate failed (and, under ``strict``, none was skipped).
    ``decision_threshold`` and ``cost_curve`` come from the expected-cost rule (R-COST-08)
    when the policy gives costs; ``slices`` is the per-slice table.
    """

    challenger: str
    champion: str | None
    holdout_rows: int
    label: str
    gates: list[GateResult]
    strict: bool = False
    decision_threshold: float = 0.5
    cost: dict[str, Any] | None = None
    slices: list[dict[str, Any]] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    created_at_ms: int = 0

    @property
    def passed(self) -> bool:
        """Whether the challenger may be promoted."""
        blocking = ("fail", "skipped") if self.strict else ("fail",)
        return not any(g.status in blocking for g in self.gates)

    @property
    def failed(self) -> list[GateResult]:
        """The gates that block promotion."""
        blocking = ("fail", "skipped") if self.strict else ("fail",)
        return [g for g in self.gates if g.status in blocking]

    def gate(self, name: str) -> GateResult:
        """The result of gate ``name`` (KeyError if it did not run)."""
        for result in self.gates:
            if result.name == name:
                return result
        raise KeyError(name)

    def summary(self) -> str:
        """One line: the verdict and the blocking gates."""
        if self.passed:
            ran = sum(g.status == "pass" for g in self.gates)
            return f"{self.challenger} passed {ran} gates against {self.champion or 'no champion'}"
        names = ", ".join(f"{g.name} ({g.reason})" for g in self.failed)
        return f"{self.challenger} failed: {names}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN/inf become null)."""
        body = asdict(self)
        body["passed"] = self.passed
        body["summary"] = self.summary()
        return dict(_plain(body))

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)
