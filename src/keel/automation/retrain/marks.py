"""The high-water mark of incremental updates (R-TRN-09): which labels are already taken.

The mark lives where the retrain records live — on the tracking runs of the model's
retrain experiment. Each incremental run carries the label-receipt range it claimed,
``(from_ms, to_ms]`` (tags :data:`FROM_TAG`, :data:`TO_TAG`), written when the run is
created, before anything is trained. So:

- the *committed* mark is the largest ``to_ms`` of a FINISHED run (an update registered
  and gated, or a batch quarantined): a worker killed between the fit and the
  registration leaves it unmoved;
- a new run starts after the largest ``to_ms`` of a RUNNING or FINISHED run: a run that
  is still going (or whose worker died and whose job will be re-delivered and resume
  with the same range, found by its key) keeps its rows; a FAILED run gives its range
  back when nothing later claimed past it;
- two runs that claim overlapping ranges at the same moment both see each other once
  created; the later (by start time, then id) steps back (:func:`superseded`).

So a labelled row trains at most one update.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from keel.errors import NotFound
from keel.tracking.models import Run, RunStatus

__all__ = [
    "FROM_TAG",
    "MODEL_TAG",
    "OUTCOME_TAG",
    "TO_TAG",
    "Claims",
    "claims",
    "high_water_mark",
    "superseded",
]

MODEL_TAG = "keel.incremental.model"
FROM_TAG = "keel.incremental.from_ms"
TO_TAG = "keel.incremental.to_ms"
OUTCOME_TAG = "keel.incremental.outcome"  # updated | quarantined
_LIVE = (RunStatus.RUNNING, RunStatus.FINISHED)
_PAGE = 100


@dataclass
class Claims:
    """The marks of a model's incremental runs, newest first as far as they matter."""

    committed_ms: int = 0  # largest to_ms of a FINISHED run
    claimed_ms: int = 0  # largest to_ms of a RUNNING or FINISHED run
    quarantined: list[tuple[int, int]] = field(default_factory=list)  # (from, to] ranges


def _range(run: Run) -> tuple[int, int] | None:
    try:
        return int(run.tags[FROM_TAG]), int(run.tags[TO_TAG])
    except (KeyError, ValueError):
        return None


def _runs(services: Any, experiment: str, model: str) -> Iterator[Run]:
    """The model's incremental runs in ``experiment``, newest first, page by page."""
    token = None
    while True:
        try:
            page = services.tracking.search_runs(
                [experiment],
                f"tags.`{MODEL_TAG}` = '{model}'",
                ["start_time DESC"],
                _PAGE,
                token,
            )
        except NotFound:  # no experiment yet: no incremental run either
            return
        yield from page.items
        token = page.next_token
        if token is None:
            return


def claims(services: Any, experiment: str, model: str, lookback_ms: int = 0) -> Claims:
    """The committed and claimed marks, and the quarantined ranges ending within
    ``lookback_ms`` of the claimed mark (the label guard's recent window leaves them out).

    Claims only grow with start time, so the scan stops at the first live run older than
    the lookback."""
    found = Claims()
    seen_live = False
    for run in _runs(services, experiment, model):
        bounds = _range(run)
        if bounds is None or run.status not in _LIVE:
            continue
        start, end = bounds
        if seen_live and end < found.claimed_ms - lookback_ms:
            break
        seen_live = True
        found.claimed_ms = max(found.claimed_ms, end)
        if run.status == RunStatus.FINISHED:
            found.committed_ms = max(found.committed_ms, end)
            if run.tags.get(OUTCOME_TAG) == "quarantined":
                found.quarantined.append((start, end))
    if found.committed_ms == 0 and found.claimed_ms > 0:
        # the newest live run is still running: the committed mark is further back
        found.committed_ms = _committed(services, experiment, model)
    return found


def _committed(services: Any, experiment: str, model: str) -> int:
    for run in _runs(services, experiment, model):
        bounds = _range(run)
        if bounds is not None and run.status == RunStatus.FINISHED:
            return bounds[1]
    return 0


def high_water_mark(services: Any, model: str, experiment: str | None = None) -> int:
    """The committed mark of ``model`` (epoch ms of label receipt; 0 before any update):
    every label received up to it has been used by a finished update or quarantined."""
    return claims(services, experiment or f"retrain-{model}", model).committed_ms


def superseded(services: Any, experiment: str, model: str, run: Run) -> Run | None:
    """The earlier live run whose claimed range overlaps ``run``'s, if any: ``run`` must
    then step back (it raced another run for the same labels)."""
    mine = _range(run)
    if mine is None:
        return None
    for other in _runs(services, experiment, model):
        theirs = _range(other)
        if other.id == run.id or theirs is None or other.status not in _LIVE:
            continue
        if theirs[1] <= mine[0]:
            break  # claims only grow: older runs end before this one starts
        overlaps = theirs[0] < mine[1] and mine[0] < theirs[1]
        if overlaps and (other.start_time_ms, other.id) < (run.start_time_ms, run.id):
            return other
    return None
