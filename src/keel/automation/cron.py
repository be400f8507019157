"""Cron expressions of job schedules: validation naming the bad field, and firing times.

Pure functions of the expression and ``now`` (no clock, no I/O), on croniter: Huey's own
``crontab`` parses neither names (``MON-FRI``) nor aliases (``@daily``) and cannot say when a
schedule fires next, which ``keel jobs`` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keel.errors import InvalidInput

__all__ = ["FIELDS", "latest_fire", "next_fire", "validate_cron"]

#: The five fields of a cron expression, in order.
FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def validate_cron(expression: str, field: str = "cron") -> str:
    """The expression normalised (aliases expanded, single spaces); InvalidInput names the
    cron field that is wrong, e.g. ``cron: hour '25' is out of range``.

    Examples
    --------
    >>> validate_cron("0  *  * * MON-FRI")
    '0 * * * MON-FRI'
    >>> validate_cron("@hourly")
    '0 * * * *'
    """
    text = " ".join(str(expression).split())
    text = _ALIASES.get(text.lower(), text)
    parts = text.split(" ")
    if len(parts) != len(FIELDS):
        raise InvalidInput(
            f"{field}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)} in {expression!r}",
            field=field,
        )
    for index, part in enumerate(parts):
        probe = ["*"] * len(FIELDS)
        probe[index] = part
        if not _parses(" ".join(probe)):
            raise InvalidInput(
                f"{field}: {FIELDS[index]} {part!r} is not valid", field=field, part=FIELDS[index]
            )
    if not _parses(text):  # each field fine alone, the combination not (e.g. 31 2 → 30 Feb)
        raise InvalidInput(f"{field}: {expression!r} never fires", field=field)
    return text


def _parses(text: str) -> bool:
    # croniter (and dateutil) load on first use: the SDK imports this module (#15.14)
    from croniter import CroniterError, croniter

    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterError, ValueError, KeyError):
        return False
    return True


def latest_fire(expression: str, now: datetime, grace_s: float) -> datetime | None:
    """The latest firing time ``t`` with ``now - grace_s < t <= now``, or None.

    A tick that runs a little late (or a worker that starts after a firing time) still
    fires the period it belongs to; the period's idempotency key makes a repeat a no-op.

    Examples
    --------
    >>> now = datetime(2026, 1, 1, 10, 0, 30, tzinfo=UTC)
    >>> latest_fire("0 * * * *", now, 60)
    datetime.datetime(2026, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)
    >>> latest_fire("0 * * * *", now + timedelta(minutes=5), 60) is None
    True
    """
    from croniter import croniter

    # croniter's get_prev(now) is strictly before now: step past now so that a firing
    # exactly at now counts.
    fired = croniter(expression, now + timedelta(microseconds=1)).get_prev(datetime)
    fired = fired.replace(fold=0)  # croniter sets fold=1 on some UTC times
    return fired if (now - fired).total_seconds() < grace_s else None


def next_fire(expression: str, after: datetime) -> datetime:
    """The first firing time strictly after ``after``.

    Examples
    --------
    >>> next_fire("30 2 * * *", datetime(2026, 1, 1, 3, 0, tzinfo=UTC))
    datetime.datetime(2026, 1, 2, 2, 30, tzinfo=datetime.timezone.utc)
    """
    from croniter import croniter

    fire: datetime = croniter(expression, after).get_next(datetime)
    return fire.replace(fold=0)
