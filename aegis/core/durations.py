"""Parsing of durations (``30s``, ``5m``, ``1h``, ``7d``) and time-of-day strings."""

import re
from datetime import UTC, datetime, time, timedelta

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_duration_s(text: str) -> float:
    """Seconds in ``text``; a bare number is seconds. Raises ValueError with a readable reason."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 5m, 1h, 7d)")
    return float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]


def parse_time_of_day(text: str) -> time:
    """``HH:MM`` or ``HH:MM:SS`` in UTC."""
    match = _TIME_OF_DAY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time of day (use HH:MM or HH:MM:SS)")
    hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"{text!r} is not a time of day (hours 0-23, minutes and seconds 0-59)")
    return time(hour, minute, second, tzinfo=UTC)


def parse_since(text: str, now: datetime) -> datetime:
    """A start instant given as a duration back from ``now`` (``24h``) or as ISO-8601."""
    try:
        seconds = parse_duration_s(text)
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (24h, 7d) nor an ISO-8601 time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_duration_s(seconds: float) -> str:
    """The shortest exact form: 300 -> '5m', 90 -> '90s', 86400 -> '1d'."""
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_S[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"

