"""Maintenance windows that recur: when planned work (a nightly backup that stops its
containers, say) is allowed to make containers unhealthy without a strike, a restart or an
alert. Pure functions of a window and ``now``.

A window comes from a ``[[maintenance]]`` table of the configuration file (``containers``,
``schedule``, ``duration``, ``timezone``, ``name``) or from a container's own label
(``aegis.maintenance-window="0 2 * * */1h"``, or ``aegis.maintenance-window.schedule``,
``.duration`` and ``.timezone``). Its schedule is a calendar trigger of
aegis/scheduling/triggers.py, so it starts on the wall clock of its zone as a job's slot
does: a start the clocks skip is the moment they jump, one they repeat is its first
occurrence. Its duration is counted in real time from that start.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from aegis.core import parsing
from aegis.core.clock import zone
from aegis.core.durations import format_duration_s, parse_time_of_day
from aegis.core.errors import ConfigError
from aegis.scheduling.triggers import Cron, Daily, Weekly, weekly

LABEL = "aegis.maintenance-window"
LABEL_SCHEDULE = "aegis.maintenance-window.schedule"
LABEL_DURATION = "aegis.maintenance-window.duration"
LABEL_TIMEZONE = "aegis.maintenance-window.timezone"
LABELS = (LABEL, LABEL_SCHEDULE, LABEL_DURATION, LABEL_TIMEZONE)
# What a window covers: every container of the host.
EVERY_CONTAINER = "*"
TABLE_KEYS = ("containers", "schedule", "duration", "timezone", "name")
MIN_DURATION_S = 60.0
MAX_DURATION_S = 7 * 86400.0
# Windows of one schedule that overlap or touch are one: at most this many are joined.
MAX_JOINED = 100
_TIME = r"\d{1,2}:\d{2}(?::\d{2})?"
_DAILY = re.compile(rf"^{_TIME}$")
_WEEKLY = re.compile(rf"^([A-Za-z]+)\s+({_TIME})$")
# The calendar triggers a window's schedule may be (each a WallClock of its zone).
Calendar = Daily | Weekly | Cron
SCHEDULE_FORMS = ("a 5-field cron expression ('0 2 * * *'), HH:MM (every day) or a "
                  "weekday and HH:MM ('sunday 03:00')")


class Container(Protocol):
    """What a window's coverage reads of a container (a sighting, a row)."""

    @property
    def name(self) -> str: ...

    @property
    def compose_project(self) -> str | None: ...

    @property
    def compose_service(self) -> str | None: ...


@dataclass(frozen=True)
class Span:
    """One occurrence of a window: [start, end), UTC instants."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Window:
    """A recurring maintenance window. ``containers``: the patterns of the containers it
    covers (a configured window's; a label's covers its own container, and has none).
    ``trigger``'s zone None is AEGIS_TIMEZONE, bound by ``in_zone``."""

    name: str
    schedule: str
    trigger: Calendar
    duration_s: float
    containers: tuple[str, ...] = ()

    def in_zone(self, default: ZoneInfo) -> Window:
        """This window on ``default``'s wall clock, unless it names a zone of its own."""
        if self.trigger.zone is not None:
            return self
        return replace(self, trigger=replace(self.trigger, zone=default))

    def around(self, now: datetime) -> Span | None:
        """The occurrence that covers ``now`` (those that overlap joined into one), or None."""
        start = self.trigger.latest_at_or_before(now)
        if start is None:
            return None
        end = start + timedelta(seconds=self.duration_s)
        if now >= end:
            return None
        return Span(start, self._joined_end(start, end))

    def next_span(self, now: datetime) -> Span | None:
        """The occurrence under way at ``now``, else the next one."""
        current = self.around(now)
        if current is not None:
            return current
        start = self.trigger.next_after(now)
        if start is None:
            return None
        return Span(start, self._joined_end(start, start + timedelta(seconds=self.duration_s)))

    def _joined_end(self, start: datetime, end: datetime) -> datetime:
        following = self.trigger.next_after(start)
        for _ in range(MAX_JOINED):
            if following is None or following > end:
                break
            end = max(end, following + timedelta(seconds=self.duration_s))
            following = self.trigger.next_after(following)
        return end

    def covers(self, name: str, compose_project: str | None,
               compose_service: str | None) -> bool:
        """Whether a configured window covers the container ``name``: ``*`` every one, a
        name or glob its name, ``project/service`` (globs allowed) a compose service's."""
        return any(_matches(pattern, name, compose_project, compose_service)
                   for pattern in self.containers)

    def describe(self) -> str:
        return f"{self.trigger.describe()} for {format_duration_s(self.duration_s)}"


def _matches(pattern: str, name: str, project: str | None, service: str | None) -> bool:
    if pattern == EVERY_CONTAINER:
        return True
    if "/" in pattern:
        wanted_project, _, wanted_service = pattern.partition("/")
        return (project is not None and service is not None
                and fnmatch.fnmatchcase(project, wanted_project)
                and fnmatch.fnmatchcase(service, wanted_service))
    return fnmatch.fnmatchcase(name, pattern)


# --- parsing ---


def parse_schedule(text: str, tz: ZoneInfo | None) -> Calendar:
    """A window's schedule: a cron expression, ``HH:MM`` or ``<weekday> HH:MM``, on the
    wall clock of ``tz`` (None: AEGIS_TIMEZONE, bound later); ValueError otherwise."""
    value = " ".join(text.split())
    if _DAILY.match(value):
        return Daily(parse_time_of_day(value).replace(tzinfo=None), tz)
    weekday = _WEEKLY.match(value)
    if weekday:
        found: Weekly = weekly(weekday.group(1), weekday.group(2))
        return replace(found, zone=tz)
    try:
        return Cron(value, tz)
    except ValueError:
        raise ValueError(f"{text!r} is not a schedule (use {SCHEDULE_FORMS})") from None


def parse_window_duration(raw: Any) -> float:
    """A window's duration: ``90m``, ``1h``, ``2d``; at least a minute, at most 7 days."""
    seconds = parsing.duration()(raw)  # a string ("90m") or, in TOML, a number of seconds
    if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
        raise ValueError(f"{raw!r} must be from 1m to 7d")
    return seconds


def label_window(labels: Mapping[str, str]) -> tuple[Window | None, str | None]:
    """The window a container's labels set, and the problem that made it ignored (one
    line naming the label), if any; (None, None) when none is set."""
    short = labels.get(LABEL)
    schedule = labels.get(LABEL_SCHEDULE)
    duration = labels.get(LABEL_DURATION)
    zone_name = labels.get(LABEL_TIMEZONE)
    if short is None and schedule is None and duration is None:
        return None, (None if zone_name is None
                      else f"{LABEL_TIMEZONE}={_shown(zone_name)} is set without a window")
    if short is not None and (schedule is not None or duration is not None):
        return None, f"{LABEL}={_shown(short)} is set with {LABEL_SCHEDULE} or " \
                     f"{LABEL_DURATION}: set one form only"
    if short is not None:
        schedule, slash, duration = short.rpartition("/")
        if not slash:
            return None, (f"{LABEL}={_shown(short)} has no /<duration> "
                          "(e.g. '0 2 * * */1h')")
    where = {LABEL_SCHEDULE: schedule, LABEL_DURATION: duration}
    for key, value in where.items():
        if value is None:
            return None, f"{key} is missing: a window needs a schedule and a duration"
    try:
        tz = None if zone_name is None else zone(zone_name)
    except ValueError as exc:
        return None, f"{LABEL_TIMEZONE}={_shown(zone_name or '')} {exc}"
    return _label_window(short, schedule or "", duration or "", tz)


def _label_window(short: str | None, schedule: str, duration: str, tz: ZoneInfo | None
                  ) -> tuple[Window | None, str | None]:
    try:
        trigger = parse_schedule(schedule, tz)
    except ValueError as exc:
        key, raw = (LABEL, short) if short is not None else (LABEL_SCHEDULE, schedule)
        return None, f"{key}={_shown(raw)} {exc}"
    try:
        duration_s = parse_window_duration(duration)
    except ValueError as exc:
        key, raw = (LABEL, short) if short is not None else (LABEL_DURATION, duration)
        return None, f"{key}={_shown(raw)} {exc}"
    return Window("label", " ".join(schedule.split()), trigger, duration_s), None


def _shown(raw: str) -> str:
    text = raw if len(raw) <= 40 else raw[:39] + "…"
    return repr(text)


def configured_windows(tables: Sequence[Any], path: Path | None) -> tuple[Window, ...]:
    """The ``[[maintenance]]`` tables of the file at ``path``, as windows; a bad one is a
    ConfigError naming the table (counted from 1) and its key."""
    return tuple(_table_window(table, f"{path}: maintenance[{number}]", number)
                 for number, table in enumerate(tables, start=1))


def _table_window(table: Any, where: str, number: int) -> Window:
    if not isinstance(table, Mapping):
        raise ConfigError(where, "must be a table ([[maintenance]])")
    for key in table:
        if key not in TABLE_KEYS:
            raise ConfigError(f"{where}.{key}",
                              f"unknown key (known: {', '.join(TABLE_KEYS)})")
    for key in ("containers", "schedule", "duration"):
        if key not in table:
            raise ConfigError(f"{where}.{key}", "is missing")
    tz = _table_value(table, where, "timezone", lambda raw: zone(parsing.nonempty(raw)))
    name = _table_value(table, where, "name", parsing.nonempty) or f"maintenance[{number}]"
    schedule = _table_value(table, where, "schedule", parsing.nonempty)
    return Window(
        name=name, schedule=" ".join(schedule.split()),
        trigger=_table_value(table, where, "schedule", lambda raw: parse_schedule(raw, tz)),
        duration_s=_table_value(table, where, "duration", parse_window_duration),
        containers=_table_value(table, where, "containers", _patterns))


def _table_value(table: Mapping[str, Any], where: str, key: str, parse: Any) -> Any:
    if key not in table:
        return None
    try:
        return parse(table[key])
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}", str(exc)) from None


def _patterns(raw: Any) -> tuple[str, ...]:
    """``containers``: a list of names, globs and ``project/service`` (or one string)."""
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values:
        raise ValueError("must be a non-empty list of container names, globs, "
                         "project/service or '*'")
    patterns = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not a container name, glob, project/service "
                             "or '*'")
        patterns.append(value.strip())
    return tuple(patterns)


# --- which windows apply to one container ---


def windows_of(container: Container, labelled: Window | None, configured: Sequence[Window],
               default_zone: ZoneInfo) -> list[Window]:
    """The windows that cover a container: its label's and the configured ones naming it,
    each on its zone's wall clock."""
    name = container.name
    found = [w for w in configured
             if w.covers(name, container.compose_project, container.compose_service)]
    if labelled is not None:  # one window per container: named after it
        found.append(replace(labelled, name=f"{LABEL} of {name}"))
    return [window.in_zone(default_zone) for window in found]


def current(windows: Sequence[Window], now: datetime) -> tuple[Window, Span] | None:
    """The window under way at ``now`` that ends last (with its occurrence), or None."""
    under_way = [(window, span) for window in windows
                 if (span := window.around(now)) is not None]
    return max(under_way, key=lambda found: found[1].end, default=None)


def upcoming(windows: Sequence[Window], now: datetime) -> tuple[Window, Span] | None:
    """The window under way at ``now``, else the one that starts first."""
    under_way = current(windows, now)
    if under_way is not None:
        return under_way
    ahead = [(window, span) for window in windows
             if (span := window.next_span(now)) is not None]
    return min(ahead, key=lambda found: found[1].start, default=None)
