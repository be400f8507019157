"""A promotion refused by the ``champion`` alias's compare-and-set: its record, and for the
controller's own promotion the pause that hands the decision to a person.

Someone moved the alias during the rollout. The controller would be refused the same way on
every tick, so instead it pauses the deployment once (the ordinary pause, actor ``policy``)
and remembers the champion it found (``state.promotion_refused``). A person then decides:
``keel deploy promote NAME`` promotes over that champion — compared against the version the
pause named, the one the person read, so a champion moved again since is refused as well
rather than overwritten unseen — or ``keel deploy resume NAME`` lets the controller try
again against the champion at rollout start (worth it once the alias is moved back).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keel.errors import Conflict, KeelError

if TYPE_CHECKING:
    from keel.deploy._changes import ChangesMixin
    from keel.deploy.models import Deployment

__all__ = [
    "REFUSED",
    "expected_champion",
    "pause_refused",
    "record_refused",
    "vname",
    "without_refusal",
]

#: The state key of a deployment paused on its refused promotion (dropped on resume).
REFUSED = "promotion_refused"
log = logging.getLogger("keel.deploy")


def without_refusal(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` without the champion a pause on a refused promotion named: what a resume
    (the controller tries again against the champion at rollout start) and a promotion keep."""
    return {k: v for k, v in state.items() if k != REFUSED}


def expected_champion(current: Deployment) -> int | None:
    """The champion a promotion of ``current`` compares against: the one its pause on a
    refused promotion named while so paused, else the champion when the rollout began."""
    refused = current.state.get(REFUSED)
    # champion_before would refuse a person's promote as surely as the controller's: the
    # version the pause named is what the person read and decided over, so it is expected;
    # a champion moved again since is refused too, never overwritten unseen.
    if current.status == "paused" and refused is not None:
        return refused["champion"]  # type: ignore[no-any-return]
    return current.state.get("champion_before")


def _what(
    current: Deployment,
    arm: str,
    version: int,
    expected: int | None,
    details: Mapping[str, Any],
    exc: Conflict,
) -> tuple[str, dict[str, Any]]:
    """The ``promotion_refused`` record's summary and details."""
    summary = f"promotion of {arm} (v{version}) to champion refused: {exc.message}"
    return summary, {
        **dict(details),
        "version": version,
        "expected_champion": expected,
        "error": exc.message,
        "weights": current.weights,
    }


def record_refused(
    service: ChangesMixin,
    current: Deployment,
    arm: str,
    version: int,
    expected: int | None,
    actor: str,
    details: Mapping[str, Any],
    exc: Conflict,
) -> None:
    """One ``promotion_refused`` record naming why (the deployment is unchanged)."""
    summary, facts = _what(current, arm, version, expected, details, exc)
    try:
        service.decision_log.record(
            "promotion_refused", current.model, summary, facts, actor, current.name
        )
    except KeelError as failed:  # the 409 is the answer; the record is a courtesy
        log.warning("could not record the refused promotion of %s: %s", current.name, failed)


def pause_refused(
    service: ChangesMixin,
    current: Deployment,
    arm: str,
    version: int,
    expected: int | None,
    details: Mapping[str, Any],
    exc: Conflict,
    at: int,
) -> None:
    """The controller's refused promotion: its ``promotion_refused`` record and the pause
    (status, pause record, timing) in one compare-and-set on ``current``'s version, so both
    are written or neither (a person's change meanwhile wins and this writes nothing)."""
    seen = exc.detail.get("current")
    name = current.name
    reason = (
        f"promotion of {arm} (v{version}) refused: champion of {current.model} is "
        f"{vname(seen)}, not {vname(expected)} as when the rollout began; a person decides: "
        f"`keel deploy promote {name}` promotes over {vname(seen)}, `keel deploy resume {name}` "
        f"lets the controller try again"
    )
    summary, facts = _what(current, arm, version, expected, details, exc)
    refused = service.decision_log.build(
        "promotion_refused", current.model, summary, facts, "policy", name, at_ms=at
    )
    state, pause = service.status_change(current, "paused", "policy", reason, at)
    state[REFUSED] = {"champion": seen, "expected": expected, "arm": arm, "at_ms": at}
    try:
        changed = service.store.update_deployment(
            name,
            current.version,
            status="paused",
            state=state,
            at_ms=at,
            decisions=[refused, pause],
        )
    except Conflict as lost:
        log.info("deployment %s changed before its refused promotion paused it: %s", name, lost)
        return
    service.notify(changed, "paused")


def vname(version: int | None) -> str:
    """``v3``, or ``none`` for no version (an alias pointing nowhere)."""
    return "none" if version is None else f"v{version}"
