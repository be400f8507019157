"""The one duration grammar: ``90s``, ``30m``, ``6h``, ``7d``, ``1w`` (and ``1.5h``).

Monitor windows, feature TTLs, ``--since`` ages and relative times in prediction-log
queries all read durations here, so ``7d`` means the same thing everywhere
(issue #15, item 25). A duration is a non-negative number followed by one unit of
``s`` (seconds), ``m`` (minutes), ``h`` (hours), ``d`` (days) or ``w`` (weeks);
spaces around the number and unit are allowed. A bare number is seconds, except
where a value may also be a point in time (``--since``, ``start``/``end``), where
the unit is required so that ``20240101`` stays a date.

Pydantic models declare duration fields with the types below (``Duration``,
``PositiveDuration`` and their ``…Text`` forms) rather than with field validators of
their own: the error then gives the reason alone and pydantic's location names the
field (``window``, ``guardrails.error_rate.for``; :func:`keel._models.error_path`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from keel.errors import InvalidInput

__all__ = [
    "MAX_DURATION_S",
    "UNITS_S",
    "Duration",
    "DurationText",
    "PositiveDuration",
    "PositiveDurationText",
    "Span",
    "duration_s",
    "format_duration_s",
    "parse_age_s",
    "parse_duration_s",
    "parse_time",
]

#: Seconds per unit.
UNITS_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_EXAMPLES = "a duration like 90s, 30m, 6h, 7d or 1w"


def parse_duration_s(
    value: str | int | float | dt.timedelta, *, field: str = "duration", positive: bool = False
) -> int:
    """Whole seconds in a duration string, a number of seconds or a timedelta.

    Raises :class:`~keel.errors.InvalidInput` naming ``field`` for anything else,
    for a negative or fractional number of seconds, and for zero when ``positive``.

    Examples
    --------
    >>> parse_duration_s("7d"), parse_duration_s("1w"), parse_duration_s("1.5h")
    (604800, 604800, 5400)
    >>> parse_duration_s(90)
    90
    """
    try:
        return duration_s(value, positive=positive)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None


def duration_s(value: object, *, positive: bool = False) -> int:
    """:func:`parse_duration_s` for a pydantic validator: a ValueError gives the reason alone.

    Pydantic names the field from the error's location, so the reason carries no field
    name (``expected a duration like 90s, 30m, 6h, 7d or 1w, got 'soon'``).
    """
    if isinstance(value, dt.timedelta):
        seconds: float = value.total_seconds()
    elif isinstance(value, str):
        parsed = _match(value)
        if parsed is None:
            raise ValueError(f"expected {_EXAMPLES}, got {value!r}")
        seconds = parsed
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond every float: refused below, as inf is
            seconds = math.inf
    else:
        raise ValueError(f"expected {_EXAMPLES}, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0 or seconds != int(seconds):
        raise ValueError(
            f"expected a whole, non-negative number of seconds or {_EXAMPLES}, got {value!r}"
        )
    if positive and seconds == 0:
        raise ValueError(f"must be longer than zero, got {value!r}")
    return int(seconds)


def _non_negative_s(value: object) -> int:
    return duration_s(value)


def _positive_s(value: object) -> int:
    return duration_s(value, positive=True)


def _non_negative_text(value: str) -> str:
    duration_s(value)
    return value


def _positive_text(value: str) -> str:
    duration_s(value, positive=True)
    return value


#: Whole seconds ≥ 0, written as ``90s``, ``30m``, ``6h``, ``7d``, ``1w``, a number of
#: seconds or a timedelta; ``Duration | None`` for an optional field.
Duration = Annotated[int, BeforeValidator(_non_negative_s)]
#: Whole seconds > 0 (a window, a period, a timeout), written like :data:`Duration`.
PositiveDuration = Annotated[int, BeforeValidator(_positive_s)]

#: The longest :data:`Span` (3650d): any longer is a typo, and milliseconds since the
#: epoch plus it stay far inside the 64-bit integers the stores and logs hold.
MAX_DURATION_S = 3650 * 86_400


def _at_most_max_s(seconds: int) -> int:
    if seconds > MAX_DURATION_S:
        raise ValueError(f"expected at most 3650d ({MAX_DURATION_S} s), got {seconds} s")
    return seconds


#: A :data:`Duration` of at most :data:`MAX_DURATION_S` (a deployment policy's durations).
Span = Annotated[Duration, AfterValidator(_at_most_max_s)]
#: A duration kept as written (``"7d"``) where the text is what is stored and shown
#: (monitor and trigger windows); checked like :data:`Duration`, read with parse_duration_s.
DurationText = Annotated[str, AfterValidator(_non_negative_text)]
#: A duration kept as written that must be longer than zero.
PositiveDurationText = Annotated[str, AfterValidator(_positive_text)]


def parse_age_s(text: str) -> int | None:
    """Seconds in a duration with its unit (``15m``, ``1w``), or None when ``text`` is not one.

    For values that are either an age or a point in time: a bare number is not an age.

    >>> parse_age_s("2h"), parse_age_s("2024-01-01")
    (7200, None)
    """
    match = _PATTERN.match(text)
    if match is None or not match.group(2):
        return None
    return int(float(match.group(1)) * UNITS_S[match.group(2)])


def _match(text: str) -> float | None:
    match = _PATTERN.match(text)
    if match is None:
        return None
    return float(match.group(1)) * UNITS_S.get(match.group(2), 1)


def parse_time(value: dt.datetime | int | float | str | None, field: str) -> dt.datetime | None:
    """A UTC datetime from a datetime (naive = UTC), epoch milliseconds or an ISO-8601 string.

    Strings may also be relative to now: ``15m``, ``2h``, ``7d``, ``1w`` ago (the duration
    grammar of :mod:`keel._durations`, with its unit). Raises InvalidInput naming ``field``.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{field} must be a finite number, got {value!r}", field=field)
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
        except (ValueError, OverflowError, OSError):  # beyond a datetime's years
            raise InvalidInput(
                f"{field} {value!r} is out of range: epoch milliseconds of the years 1 to 9999",
                field=field,
            ) from None
    try:
        if isinstance(value, str):
            text = value.strip()
            age_s = parse_age_s(text)
            if age_s is not None:
                return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
            parsed = dt.datetime.fromisoformat(text)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):  # not a time, or an age beyond a datetime's years
        pass
    raise InvalidInput(
        f"{field} must be an ISO-8601 time, epoch milliseconds or an age like 15m/2h/7d/1w; "
        f"got {value!r}",
        field=field,
    )


def format_duration_s(seconds: int) -> str:
    """``seconds`` in the largest unit of the grammar that divides it (``1w``, ``4d``, ``90s``);
    reads back to the same number with :func:`parse_duration_s`.

    >>> format_duration_s(604_800), format_duration_s(345_600), format_duration_s(90)
    ('1w', '4d', '90s')
    """
    for unit, size in reversed(UNITS_S.items()):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
