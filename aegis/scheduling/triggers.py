"""When jobs fall due. Pure functions of a UTC instant; nothing here reads the clock.

Each trigger answers two questions: the first slot strictly after an instant
(``next_after``) and the last slot at or before it (``latest_at_or_before``, used for
catch-up and for an interval job's current slot). Slots are UTC instants, so every host
agrees on them through daylight-saving changes. Intervals count real seconds; daily,
weekly and cron triggers follow the wall clock of their time zone (``WallClock``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import croniter

from aegis.core.clock import UTC_ZONE, instant, wall_time, zone
from aegis.core.durations import parse_time_of_day

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_COUNTED_SLOTS = 10_000
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Trigger(Protocol):
    def next_after(self, moment: datetime) -> datetime | None: ...

    def latest_at_or_before(self, moment: datetime) -> datetime | None: ...

    def describe(self) -> str: ...


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a trigger needs a timezone-aware datetime")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Every:
    """Every ``period_s`` seconds, aligned to the epoch: a 5-minute job runs at :00, :05...
    ``offset_s`` moves every slot that far into its period (``spread``): 0 to period."""

    period_s: float
    offset_s: float = 0.0

    def __post_init__(self) -> None:
        if self.period_s < 1:
            raise ValueError("an interval must be at least 1 second")
        if not 0 <= self.offset_s < self.period_s:
            raise ValueError("an interval's offset must be within its period")

    def latest_at_or_before(self, moment: datetime) -> datetime:
        start = EPOCH + timedelta(seconds=self.offset_s)
        elapsed_us = (_utc(moment) - start) // timedelta(microseconds=1)
        period_us = int(self.period_s * 1_000_000)
        return start + timedelta(microseconds=elapsed_us - elapsed_us % period_us)

    def next_after(self, moment: datetime) -> datetime:
        return self.latest_at_or_before(moment) + timedelta(seconds=self.period_s)

    def describe(self) -> str:
        shown = self._period()
        return f"{shown}, {self.offset_s:g}s into it" if self.offset_s else shown

    def _period(self) -> str:
        for unit, size in (("hour", 3600), ("minute", 60)):
            if self.period_s % size == 0:
                count = int(self.period_s // size)
                return f"every {unit}" if count == 1 else f"every {count} {unit}s"
        return "every second" if self.period_s == 1 else f"every {self.period_s:g} seconds"


def spread(trigger: Trigger, key: str) -> Trigger:
    """An interval trigger moved a whole number of seconds into its period, by a hash of
    ``key``: the same on every host (so claims still meet), different from job to job, so
    many jobs of one interval do not all start in the same second. Anything else as is."""
    if not isinstance(trigger, Every) or trigger.period_s < 2:
        return trigger
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return replace(trigger, offset_s=float(digest % int(trigger.period_s)))


class WallClock:
    """A trigger of a person's calendar (daily, weekly, cron): its slots are wall-clock
    times of ``zone``, each made an instant by ``clock.instant``. A wall-clock time the
    clocks skip runs once, at the first instant after the gap; one they repeat runs once,
    at its first occurrence. Subclasses say which wall-clock times are slots.

    ``zone`` None is AEGIS_TIMEZONE, bound when the job is registered (UTC until then)."""

    zone: ZoneInfo | None

    @property
    def tz(self) -> ZoneInfo:
        return self.zone or UTC_ZONE

    def wall_after(self, wall: datetime) -> datetime:
        """The first slot's wall-clock time strictly after ``wall``."""
        raise NotImplementedError

    def wall_at_or_before(self, wall: datetime) -> datetime:
        """The last slot's wall-clock time at or before ``wall``."""
        raise NotImplementedError

    def next_after(self, moment: datetime) -> datetime:
        moment = _utc(moment)
        wall = self.wall_after(wall_time(moment, self.tz))
        # after the clocks went back, the repeated hour's times were slots already
        while (slot := instant(wall, self.tz)) <= moment:
            wall = self.wall_after(wall)
        return slot

    def latest_at_or_before(self, moment: datetime) -> datetime:
        moment = _utc(moment)
        wall = self.wall_at_or_before(wall_time(moment, self.tz))
        slot = instant(wall, self.tz)
        # in the repeated hour, later wall-clock times may be slots already
        while True:
            later_wall = self.wall_after(wall)
            later = instant(later_wall, self.tz)
            if later > moment:
                return slot
            wall, slot = later_wall, later

    def _zone_text(self) -> str:
        return self.tz.key


@dataclass(frozen=True)
class Daily(WallClock):
    at: time
    zone: ZoneInfo | None = None

    def wall_at_or_before(self, wall: datetime) -> datetime:
        candidate = datetime.combine(wall.date(), self.at)
        return candidate if candidate <= wall else candidate - timedelta(days=1)

    def wall_after(self, wall: datetime) -> datetime:
        candidate = datetime.combine(wall.date(), self.at)
        return candidate if candidate > wall else candidate + timedelta(days=1)

    def describe(self) -> str:
        return f"daily at {_clock_text(self.at)} {self._zone_text()}"


@dataclass(frozen=True)
class Weekly(WallClock):
    # Monday is 0
    weekday: int
    at: time
    zone: ZoneInfo | None = None

    def wall_at_or_before(self, wall: datetime) -> datetime:
        day = wall.date() - timedelta(days=(wall.weekday() - self.weekday) % 7)
        candidate = datetime.combine(day, self.at)
        return candidate if candidate <= wall else candidate - timedelta(days=7)

    def wall_after(self, wall: datetime) -> datetime:
        return self.wall_at_or_before(wall) + timedelta(days=7)

    def describe(self) -> str:
        return (f"weekly on {WEEKDAYS[self.weekday].capitalize()} at {_clock_text(self.at)} "
                f"{self._zone_text()}")


@dataclass(frozen=True)
class Cron(WallClock):
    """A cron expression, matched against the wall clock of its zone: 5 fields (minute
    first), or 6 with seconds first as robfig/cron (Ofelia) reads them."""

    expression: str
    zone: ZoneInfo | None = None

    def __post_init__(self) -> None:
        if len(self.expression.split()) not in (5, 6) or not croniter.is_valid(
                self.expression, second_at_beginning=self.with_seconds):
            raise ValueError(f"{self.expression!r} is not a cron expression of 5 fields "
                             "(or 6, seconds first)")

    @property
    def with_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def wall_after(self, wall: datetime) -> datetime:
        result: datetime = croniter(self.expression, wall,
                                    second_at_beginning=self.with_seconds).get_next(datetime)
        return result

    def wall_at_or_before(self, wall: datetime) -> datetime:
        # get_prev is strictly before its start; cron slots are whole seconds, so starting
        # one second later includes a slot that falls exactly on ``wall``.
        start = wall.replace(microsecond=0) + timedelta(seconds=1)
        result: datetime = croniter(self.expression, start,
                                    second_at_beginning=self.with_seconds).get_prev(datetime)
        return result

    def describe(self) -> str:
        return f"cron {self.expression} {self._zone_text()}"


@dataclass(frozen=True)
class Once:
    at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", _utc(self.at))

    def next_after(self, moment: datetime) -> datetime | None:
        return self.at if self.at > _utc(moment) else None

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        return self.at if self.at <= _utc(moment) else None

    def describe(self) -> str:
        return f"once at {self.at.strftime('%Y-%m-%d %H:%M:%S')} UTC"


def count_slots(trigger: Trigger, first: datetime, last: datetime) -> int:
    """How many slots lie in [first, last] (capped at MAX_COUNTED_SLOTS)."""
    if last < first:
        return 0
    if isinstance(trigger, Every):
        return int((last - first).total_seconds() // trigger.period_s) + 1
    count, slot = 0, first
    slot_or_none: datetime | None = first
    while slot_or_none is not None and slot_or_none <= last and count < MAX_COUNTED_SLOTS:
        slot = slot_or_none
        count += 1
        slot_or_none = trigger.next_after(slot)
    return count


def slot_before(trigger: Trigger, slot: datetime) -> datetime | None:
    """The last slot strictly before ``slot``."""
    return trigger.latest_at_or_before(slot - timedelta(microseconds=1))


def _clock_text(at: time) -> str:
    return at.strftime("%H:%M:%S" if at.second else "%H:%M")


# --- the public constructors (``every(minutes=5)``, ``daily("06:00")``...) ---


def every(seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> Every:
    return Every(seconds + 60 * minutes + 3600 * hours)


def daily(at: str, *, timezone: str | None = None) -> Daily:
    return Daily(parse_time_of_day(at).replace(tzinfo=None), _zone_or_none(timezone))


def weekly(weekday: str, at: str, *, timezone: str | None = None) -> Weekly:
    day = weekday.strip().lower()
    matches = [i for i, name in enumerate(WEEKDAYS) if name.startswith(day) and len(day) >= 3]
    if len(matches) != 1:
        raise ValueError(f"{weekday!r} is not a weekday (monday..sunday)")
    return Weekly(matches[0], parse_time_of_day(at).replace(tzinfo=None),
                  _zone_or_none(timezone))


def cron(expression: str, *, timezone: str | None = None) -> Cron:
    return Cron(" ".join(expression.split()), _zone_or_none(timezone))


def _zone_or_none(name: str | None) -> ZoneInfo | None:
    return None if name is None else zone(name)


def in_zone(trigger: Trigger, tz: ZoneInfo) -> Trigger:
    """``trigger`` on the wall clock of ``tz`` (an interval or a one-off is unchanged)."""
    return replace(trigger, zone=tz) if isinstance(trigger, Daily | Weekly | Cron) else trigger


def later_on_clock(trigger: Trigger, moment: datetime, seconds: float) -> datetime:
    """``seconds`` after ``moment`` as the trigger counts time: on the wall clock of its
    zone for a calendar trigger (24h30m after 22:00 is 22:30 the next day, whatever the
    clocks did overnight), in real seconds for an interval or a one-off."""
    if isinstance(trigger, WallClock):
        return instant(wall_time(moment, trigger.tz) + timedelta(seconds=seconds), trigger.tz)
    return _utc(moment) + timedelta(seconds=seconds)


def once(at: datetime) -> Once:
    return Once(at)



# --- schedules written as text (container labels: aegis's own and Ofelia's) ---

# robfig/cron's descriptors, as 5-field expressions
DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
               "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
               "@hourly": "0 * * * *"}
_GO_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6,
              "ns": 1e-9}
_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_DAILY = re.compile(r"^daily(?:\s+at)?\s+(\S+)$")
_WEEKLY = re.compile(r"^weekly(?:\s+on)?\s+([a-z]+)(?:\s+at)?\s+(\S+)$")
_EVERY = re.compile(r"^every\s+(.+)$")


def go_duration_s(text: str) -> float:
    """Seconds in a Go duration (``90s``, ``1h30m``, ``2m0.5s``), as Ofelia's ``@every``
    takes it; a bare number is seconds. Raises ValueError naming the text."""
    value = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = _GO_PART.findall(value)
    if not value or "".join(number + unit for number, unit in parts) != value:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 5m, 1h30m)")
    return sum(float(number) * _GO_UNIT_S[unit] for number, unit in parts)


def parse_schedule(text: str, *, timezone: str | None = None) -> Trigger:
    """A trigger from a schedule written as text: ``@every 90s`` / ``@every 1h30m``, the
    descriptors (``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``,
    ``@yearly``), a cron expression of 5 fields or 6 (seconds first), or aegis's own
    forms (``every 5m``, ``daily at 03:00``, ``weekly on sunday at 03:00``). Raises
    ValueError with the reason."""
    value = " ".join(text.split())
    lowered = value.lower()
    if not value:
        raise ValueError("the schedule is empty")
    if lowered.startswith("@every"):
        return every(go_duration_s(value[len("@every"):]))
    if lowered.startswith("@"):
        if lowered not in DESCRIPTORS:
            raise ValueError(f"{value!r} is not a schedule (descriptors: "
                             f"{', '.join(DESCRIPTORS)}, @every DURATION)")
        return cron(DESCRIPTORS[lowered], timezone=timezone)
    if match := _EVERY.match(lowered):
        return every(go_duration_s(match.group(1).replace(" ", "")))
    if match := _DAILY.match(lowered):
        return daily(match.group(1), timezone=timezone)
    if match := _WEEKLY.match(lowered):
        return weekly(match.group(1), match.group(2), timezone=timezone)
    return cron(value, timezone=timezone)
