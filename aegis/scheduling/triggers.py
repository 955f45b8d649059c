"""When jobs fall due. Pure functions of a UTC instant; nothing here reads the clock.

Each trigger answers two questions: the first slot strictly after an instant
(``next_after``) and the last slot at or before it (``latest_at_or_before``, used for
catch-up and for an interval job's current slot).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Protocol

from croniter import croniter

from aegis.core.durations import parse_time_of_day

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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
    """Every ``period_s`` seconds, aligned to the epoch: a 5-minute job runs at :00, :05..."""

    period_s: float

    def __post_init__(self) -> None:
        if self.period_s < 1:
            raise ValueError("an interval must be at least 1 second")

    def latest_at_or_before(self, moment: datetime) -> datetime:
        elapsed_us = (_utc(moment) - EPOCH) // timedelta(microseconds=1)
        period_us = int(self.period_s * 1_000_000)
        return EPOCH + timedelta(microseconds=elapsed_us - elapsed_us % period_us)

    def next_after(self, moment: datetime) -> datetime:
        return self.latest_at_or_before(moment) + timedelta(seconds=self.period_s)

    def describe(self) -> str:
        for unit, size in (("hour", 3600), ("minute", 60)):
            if self.period_s % size == 0:
                count = int(self.period_s // size)
                return f"every {unit}" if count == 1 else f"every {count} {unit}s"
        return "every second" if self.period_s == 1 else f"every {self.period_s:g} seconds"


@dataclass(frozen=True)
class Daily:
    at: time

    def latest_at_or_before(self, moment: datetime) -> datetime:
        moment = _utc(moment)
        candidate = datetime.combine(moment.date(), self.at.replace(tzinfo=UTC))
        return candidate if candidate <= moment else candidate - timedelta(days=1)

    def next_after(self, moment: datetime) -> datetime:
        return self.latest_at_or_before(moment) + timedelta(days=1)

    def describe(self) -> str:
        return f"daily at {_clock_text(self.at)} UTC"


@dataclass(frozen=True)
class Weekly:
    weekday: int  # Monday is 0
    at: time

    def latest_at_or_before(self, moment: datetime) -> datetime:
        moment = _utc(moment)
        day = moment.date() - timedelta(days=(moment.weekday() - self.weekday) % 7)
        candidate = datetime.combine(day, self.at.replace(tzinfo=UTC))
        return candidate if candidate <= moment else candidate - timedelta(days=7)

    def next_after(self, moment: datetime) -> datetime:
        return self.latest_at_or_before(moment) + timedelta(days=7)

    def describe(self) -> str:
        return f"weekly on {WEEKDAYS[self.weekday].capitalize()} at {_clock_text(self.at)} UTC"


@dataclass(frozen=True)
class Cron:
    """A 5-field cron expression, evaluated in UTC."""

    expression: str

    def __post_init__(self) -> None:
        if len(self.expression.split()) != 5 or not croniter.is_valid(self.expression):
            raise ValueError(f"{self.expression!r} is not a 5-field cron expression")

    def next_after(self, moment: datetime) -> datetime:
        result: datetime = croniter(self.expression, _utc(moment)).get_next(datetime)
        return result.astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        # get_prev is strictly before its start; cron slots are whole minutes, so starting
        # one second later includes a slot that falls exactly on ``moment``.
        start = _utc(moment).replace(microsecond=0) + timedelta(seconds=1)
        result: datetime = croniter(self.expression, start).get_prev(datetime)
        return result.astimezone(UTC)

    def describe(self) -> str:
        return f"cron {self.expression}"


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


def _clock_text(at: time) -> str:
    return at.strftime("%H:%M:%S" if at.second else "%H:%M")


# --- the public constructors (``every(minutes=5)``, ``daily("06:00")``...) ---


def every(seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> Every:
    return Every(seconds + 60 * minutes + 3600 * hours)


def daily(at: str) -> Daily:
    return Daily(parse_time_of_day(at).replace(tzinfo=None))


def weekly(weekday: str, at: str) -> Weekly:
    day = weekday.strip().lower()
    matches = [i for i, name in enumerate(WEEKDAYS) if name.startswith(day) and len(day) >= 3]
    if len(matches) != 1:
        raise ValueError(f"{weekday!r} is not a weekday (monday..sunday)")
    return Weekly(matches[0], parse_time_of_day(at).replace(tzinfo=None))


def cron(expression: str) -> Cron:
    return Cron(" ".join(expression.split()))


def once(at: datetime) -> Once:
    return Once(at)

