"""The optional ``event_time`` of a predict body: when the predicted event happened (#15.19).

A prediction replayed through the gateway (a backfill, a replay of logged requests, a late
investigation) is logged at its event time instead of its arrival time, so monitoring
windows, which read the prediction log's ``at_ms``, put it where it belongs. The grammar is
the feedback API's (:func:`keel._durations.parse_time`: an ISO-8601 time, naive = UTC, or
epoch **milliseconds**), with three refusals, each a 422 naming ``event_time``:

- a relative age (``7d``): the parsed body is remembered by its bytes
  (``InputSpec.parse``), so a time relative to "now" would freeze at its first parse;
- a time before 2000-01-01: almost always epoch *seconds* sent where milliseconds are meant;
- a time more than :data:`MAX_SKEW_S` ahead of this server's clock: an event cannot
  have happened in the future (clocks differ by a little, hence the allowance).

Rows logged with an explicit event time also carry ``received_ms`` (the arrival time) in
their ``extra`` column, so a backfill is always told apart from live traffic.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from typing import Any

from keel._durations import parse_age_s, parse_time
from keel.errors import InvalidInput

__all__ = ["EARLIEST_MS", "MAX_SKEW_S", "event_ms_of", "replay_extra"]

#: How far ahead of the server's clock an event time may be (clock skew between hosts).
MAX_SKEW_S = 300
#: 2000-01-01T00:00:00Z in epoch milliseconds: earlier times are refused.
EARLIEST_MS = 946_684_800_000


def event_ms_of(raw: Any, *, now_ms: int | None = None) -> int | None:
    """Epoch milliseconds of a body's ``event_time`` (None when absent); InvalidInput
    naming ``event_time`` for anything else (see the module docstring)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise InvalidInput(
            f"event_time must be an ISO-8601 time or epoch milliseconds, got {type(raw).__name__}",
            field="event_time",
        )
    if isinstance(raw, str) and parse_age_s(raw.strip()) is not None:
        raise InvalidInput(
            f"event_time must be an absolute time (ISO-8601 or epoch milliseconds), "
            f"not an age like {raw!r}",
            field="event_time",
        )
    if isinstance(raw, float) and not math.isfinite(raw):
        raise InvalidInput(f"event_time must be a finite number, got {raw!r}", field="event_time")
    try:
        when = parse_time(raw, "event_time")
    except InvalidInput:  # (a ValueError too) its own words: not a time
        raise
    except (OverflowError, OSError, ValueError):  # out of datetime's range
        raise InvalidInput(f"event_time {raw!r} is out of range", field="event_time") from None
    assert when is not None
    at_ms = int(when.timestamp() * 1000)
    if at_ms < EARLIEST_MS:
        raise InvalidInput(
            f"event_time {raw!r} is before 2000-01-01 (numbers are epoch milliseconds, "
            "not seconds)",
            field="event_time",
        )
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if at_ms > now + MAX_SKEW_S * 1000:
        ahead = dt.timedelta(milliseconds=at_ms - now)
        raise InvalidInput(
            f"event_time {raw!r} is {ahead} ahead of the server's clock "
            f"(at most {MAX_SKEW_S} s allowed)",
            field="event_time",
            max_skew_s=MAX_SKEW_S,
        )
    return at_ms


def replay_extra(extra: str | None, received_ms: int) -> str:
    """The ``extra`` JSON of a row logged at an explicit event time: the route's own
    ``extra`` plus ``received_ms``, when the request arrived."""
    doc: dict[str, Any] = json.loads(extra) if extra else {}
    doc["received_ms"] = received_ms
    return json.dumps(doc)
