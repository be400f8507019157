"""Monitor rules: a permanent check on one column of the monitored window.

A rule is an alert condition written by a person, typically as the prevention of an
incident (``keel decisions resolve``, R-CICD-13): ``null_share(TotalCharges) > 0.01``
alerts whenever more than 1% of the window's ``TotalCharges`` are missing. Rules are
part of the monitor's spec (``rules:``) and every run evaluates them next to the drift
and quality checks; a breached rule makes the run an alert.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from keel._models import Entity
from keel.errors import InvalidInput

if TYPE_CHECKING:  # pandas stays out of the import of monitor specs
    import pandas as pd

__all__ = [
    "MAX_RULES",
    "STATISTICS",
    "MonitorRule",
    "evaluate_rules",
    "parse_rule",
    "resolution_source",
]

Statistic = Literal["null_share", "mean", "min", "max"]
Op = Literal[">", ">=", "<", "<="]

#: Rules one monitor may hold (its own and those incident resolutions added).
MAX_RULES = 100
#: What a rule may measure on a column of the window.
STATISTICS: tuple[str, ...] = ("null_share", "mean", "min", "max")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
#: The ``source`` of a rule that resolving incident N added (:func:`resolution_source`).
_RESOLUTION = re.compile(r"^decision \d+$")
_TEXT = re.compile(
    r"^\s*(?P<statistic>\w+)\s*\(\s*(?P<feature>[^()]+?)\s*\)\s*(?P<op>>=|<=|>|<)\s*"
    r"(?P<threshold>[-+0-9.eE]+)\s*$"
)


class MonitorRule(Entity):
    """Alert when ``statistic`` of column ``feature`` over the window is ``op threshold``.

    ``source`` says where the rule came from (``decision 42``: the incident whose
    resolution added it).
    """

    feature: str = Field(min_length=1, max_length=256)
    statistic: Statistic
    op: Op
    threshold: float
    source: str | None = Field(default=None, max_length=256)

    @property
    def text(self) -> str:
        """The rule as written: ``null_share(TotalCharges) > 0.01``."""
        return f"{self.statistic}({self.feature}) {self.op} {self.threshold:g}"

    def same_check(self, other: MonitorRule) -> bool:
        """Whether both rules check the same thing (their sources aside)."""
        return self.text == other.text

    @property
    def from_resolution(self) -> bool:
        """Whether resolving an incident added this rule (its source is ``decision N``)."""
        return self.source is not None and _RESOLUTION.match(self.source) is not None


def resolution_source(decision_id: int) -> str:
    """The ``source`` of a rule added by resolving incident ``decision_id``."""
    return f"decision {decision_id}"


def parse_rule(text: str, *, field: str = "rule") -> MonitorRule:
    """``statistic(feature) op threshold`` as a rule; InvalidInput naming ``field``."""
    found = _TEXT.match(text or "")
    if found is None:
        raise InvalidInput(
            f"{field}: expected 'statistic(feature) op threshold' such as "
            f"'null_share(TotalCharges) > 0.01', got {text!r}",
            field=field,
        )
    if found["statistic"] not in STATISTICS:
        raise InvalidInput(
            f"{field}: unknown statistic {found['statistic']!r} (use {', '.join(STATISTICS)})",
            field=field,
        )
    try:
        threshold = float(found["threshold"])
    except ValueError:
        number = found["threshold"]
        raise InvalidInput(f"{field}: {number!r} is not a number", field=field) from None
    return MonitorRule(
        feature=found["feature"],
        statistic=found["statistic"],  # type: ignore[arg-type]
        op=found["op"],  # type: ignore[arg-type]
        threshold=threshold,
    )


def _measure(statistic: str, column: pd.Series) -> float | None:
    import pandas as pd

    if statistic == "null_share":
        return float(column.isna().mean()) if len(column) else None
    values = pd.to_numeric(column, errors="coerce").dropna()
    if values.empty:
        return None
    return float({"mean": values.mean, "min": values.min, "max": values.max}[statistic]())


def evaluate_rules(rules: Sequence[MonitorRule], window: pd.DataFrame) -> list[dict[str, Any]]:
    """Each rule's value on ``window`` and whether it is breached.

    A column missing from the window breaches its rule (the check cannot be made, and a
    vanished column is itself a break); a numeric statistic of a column with no numeric
    value is breached too, with that reason.
    """
    results = []
    for rule in rules:
        item: dict[str, Any] = {"rule": rule.text, "feature": rule.feature, "source": rule.source}
        if rule.feature not in window.columns:
            item.update(value=None, breached=True, reason="column not in the window")
        else:
            value = _measure(rule.statistic, window[rule.feature])
            if value is None:
                item.update(value=None, breached=True, reason="no value to measure")
            else:
                item.update(value=value, breached=_OPS[rule.op](value, rule.threshold))
        results.append(item)
    return results
