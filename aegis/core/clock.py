"""The one clock aegis reads, and the one rule that turns a wall-clock time of a time zone
into an instant. Decision functions take ``now`` instead of calling ``utcnow``.

Instants are UTC-aware datetimes everywhere; a time zone only matters where a person's
calendar does: a daily or weekly time, a cron expression, a day of the journal. Zones
come from the IANA database through ``zoneinfo`` (the system's, else the ``tzdata``
package aegis depends on, so a minimal image without /usr/share/zoneinfo works too).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_ZONE = ZoneInfo("UTC")


def utcnow() -> datetime:
    return datetime.now(UTC)


def zone(name: str) -> ZoneInfo:
    """The time zone of an IANA name (``Europe/Berlin``, ``UTC``); ValueError otherwise."""
    key = name.strip()
    if key.upper() == "UTC":
        return UTC_ZONE
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a time zone (use an IANA name such as "
                         "Europe/Berlin, America/New_York or UTC)") from None


def wall_time(moment: datetime, tz: ZoneInfo) -> datetime:
    """The naive wall-clock time that instant ``moment`` reads in ``tz``."""
    return moment.astimezone(tz).replace(tzinfo=None)


def instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``tz``.

    A time that exists twice (the hour repeated when the clocks go back) is its first
    occurrence. A time that does not exist (the hour skipped when they go forward) is the
    first instant after the gap: the moment the clocks jumped."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if wall_time(first, tz) == wall:
        return first
    return _end_of_gap(wall, tz)


def _end_of_gap(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clocks jumped over ``wall``. Read with the offset from after the
    jump, ``wall`` is an instant before it; with the offset from before, one after it
    (PEP 495): the jump lies between, found to the second (transitions are whole seconds)."""
    before_s = math.floor(wall.replace(tzinfo=tz, fold=1).timestamp())
    after_s = math.ceil(wall.replace(tzinfo=tz, fold=0).timestamp())
    offset_after = _offset(after_s, tz)
    while after_s - before_s > 1:
        middle_s = (before_s + after_s) // 2
        if _offset(middle_s, tz) == offset_after:
            after_s = middle_s
        else:
            before_s = middle_s
    return datetime.fromtimestamp(after_s, UTC)


def _offset(epoch_s: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(epoch_s, UTC).astimezone(tz).utcoffset()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The calendar day ``day`` of ``tz`` as UTC instants [start, end): 23 or 25 hours on
    the days the clocks change, none at all on a day a zone skipped."""
    start = instant(datetime.combine(day, time(0, 0)), tz)
    return start, instant(datetime.combine(day + timedelta(days=1), time(0, 0)), tz)


def offset_text(moment: datetime) -> str:
    """``+02:00`` for an aware datetime (``+00:00`` for UTC)."""
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
