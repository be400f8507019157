"""Creating or replacing a monitor keeps the rules incident resolutions added to it.

Resolving an incident adds a rule to a monitor (``source: decision N``,
:mod:`keel.decisions.prevention`). A person replacing the monitor's spec later
(``POST /v1/monitors``, ``Client.create_monitor``, ``keel monitor create``) rarely
repeats it, and dropping it silently would lose what the incident taught. So a replace
keeps every resolution rule of the stored monitor that the new spec does not list, unless
the caller passes ``drop_resolution_rules``; a rule the new spec lists is kept either way
(with its origin, when the listing gives none). The merged rules are held to
:data:`~keel.monitoring.rules.MAX_RULES`, and the result says which resolution rules were
kept and which dropped.

The merge runs under the monitor's row lock (:meth:`MonitorService.update`), so a
resolution adding its rule while the spec is replaced is not undone by the replace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from keel._models import now_ms
from keel.errors import InvalidInput, NotFound
from keel.monitoring.models import Monitor, MonitorSpec, ResolutionRules, SavedMonitor
from keel.monitoring.rules import MAX_RULES, MonitorRule

if TYPE_CHECKING:
    from keel.monitoring.service import MonitorService

__all__ = ["merge_rules", "save_monitor"]


def merge_rules(
    current: Sequence[MonitorRule], given: Sequence[MonitorRule], *, drop: bool
) -> tuple[list[MonitorRule], ResolutionRules]:
    """The rules a replace stores: ``given``, then the resolution rules of ``current`` it
    does not list (none when ``drop``); with what became of those resolution rules.

    InvalidInput naming ``rules`` when the merged list holds more than MAX_RULES.
    """
    rules, carried = list(given), []
    outcome = ResolutionRules()
    for old in current:
        if not old.from_resolution:
            continue  # the person's own rules: the new spec says what they are now
        listed = next((n for n, rule in enumerate(rules) if rule.same_check(old)), None)
        if listed is not None:
            if rules[listed].source is None:  # the same check, still the incident's lesson
                rules[listed] = rules[listed].model_copy(update={"source": old.source})
            outcome.kept.append(old)
        elif drop:
            outcome.dropped.append(old)
        else:
            carried.append(old)
            outcome.kept.append(old)
    merged = rules + carried
    if len(merged) > MAX_RULES:
        raise InvalidInput(
            f"rules: {len(rules)} given and {len(carried)} kept from incident resolutions "
            f"make {len(merged)}, more than {MAX_RULES}; list fewer, or pass "
            "drop_resolution_rules to drop the resolution rules the spec does not list",
            field="rules",
            given=len(rules),
            kept=[rule.text for rule in carried],
            limit=MAX_RULES,
        )
    return merged, outcome


def save_monitor(
    monitors: MonitorService, spec: MonitorSpec, *, actor: str | None, drop: bool
) -> SavedMonitor:
    """Create monitor ``spec`` or replace the stored one of its name, keeping (unless
    ``drop``) its resolution rules the spec does not list; checked as
    :meth:`MonitorService.check` checks the merged spec, nothing stored when refused."""
    merges: list[ResolutionRules] = []  # what the merge under the lock did, once it ran

    def merged(current: MonitorSpec) -> MonitorSpec:
        rules, outcome = merge_rules(current.rules, spec.rules, drop=drop)
        merges.append(outcome)
        return spec.model_copy(update={"rules": rules})

    try:
        stored = monitors.update(spec.name, merged)
    except NotFound:
        if merges:  # the check's NotFound (an unknown model), not a new monitor
            raise
        monitors.check(spec)
        now = now_ms()
        new = Monitor(**spec.model_dump(), created_by=actor, created_at_ms=now, updated_at_ms=now)
        return SavedMonitor(**monitors.store.save_monitor(new).model_dump())
    except InvalidInput as exc:
        raise _naming_kept_rules(exc, spec, merges[-1] if merges else None) from None
    return SavedMonitor(**stored.model_dump(), resolution_rules=merges[-1])


def _naming_kept_rules(
    exc: InvalidInput, spec: MonitorSpec, outcome: ResolutionRules | None
) -> InvalidInput:
    """``exc``, naming the kept resolution rules it refuses: the caller did not write them
    (a new reference without their column), so say where they come from and how to drop
    them."""
    unknown = set(exc.detail.get("unknown", ()))
    refused = [
        rule
        for rule in (outcome.kept if outcome is not None else [])
        if rule.feature in unknown and not any(rule.same_check(r) for r in spec.rules)
    ]
    if exc.field != "rules" or not refused:
        return exc
    named = ", ".join(f"{rule.text} ({rule.source})" for rule in refused)
    return InvalidInput(
        f"{exc.message}; kept from incident resolutions: {named} "
        "(drop_resolution_rules drops the resolution rules the spec does not list)",
        field="rules",
        **exc.detail,
    )
