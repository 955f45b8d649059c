"""The two history pages: job runs (trigger, duration, lateness, host) and events, with
the filters of ``aegis jobs history`` and ``aegis events`` and pages of a fixed size.

A page goes on from the last row of the one before (a keyset cursor on the sort columns,
``before=TIME~ID``), never with an OFFSET, so the hundredth page costs what the first does.
A filter that does not parse is a PageError (400) naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from markupsafe import Markup

from aegis.core.durations import parse_since
from aegis.scheduling.repository import JobRun, JobWithLastRun, Runs, RunStatus, RunTrigger
from aegis.storage.events import Event, Importance
from aegis.storage.runtime import Runtime
from aegis.web import charts
from aegis.web.pages import PageError
from aegis.web.render import seconds_text

PAGE_ROWS = 50
DEFAULT_SINCE = "24h"
MAX_FILTER_CHARS = 200
Query = Mapping[str, Sequence[str]]  # a parsed query string: name -> values


def one(query: Query, name: str, default: str = "") -> str:
    """The value of one query parameter (the last one given), bounded in length."""
    values = query.get(name) or [default]
    value = values[-1].strip()
    if len(value) > MAX_FILTER_CHARS:
        raise PageError(400, f"{name}: longer than {MAX_FILTER_CHARS} characters")
    return value


def cursor(query: Query) -> tuple[datetime, int] | None:
    """``before=TIME~ID``: the sort key of the last row of the previous page."""
    text = one(query, "before")
    if not text:
        return None
    moment, sep, row_id = text.rpartition("~")
    try:
        found = datetime.fromisoformat(moment)
        if not sep or found.tzinfo is None:
            raise ValueError(text)
        found_id = int(row_id)
        if not 0 <= found_id < 2 ** 63:
            raise ValueError(row_id)
        return found, found_id
    except ValueError:
        message = "before: not a page cursor (follow the page's own links)"
        raise PageError(400, message) from None


def next_link(path: str, filters: Mapping[str, str | list[str]], moment: datetime,
              row_id: int) -> str:
    """The link to the page after the one that ended with (moment, row_id)."""
    kept: dict[str, str | list[str]] = {name: value for name, value in filters.items()
                                        if value}
    kept["before"] = f"{moment.isoformat()}~{row_id}"
    return f"{path}?{urlencode(kept, doseq=True)}"


# --- job runs ---


@dataclass(frozen=True)
class RunLine:
    run: JobRun
    lateness_s: float | None  # started after its slot; None for manual and missed runs


@dataclass(frozen=True)
class JobsPage:
    now: datetime
    jobs: list[JobWithLastRun]
    job: str  # the filter; "" for every job
    runs: list[RunLine]
    next_link: str | None
    chart: Markup


def lateness_s(run: JobRun) -> float | None:
    if (run.trigger == RunTrigger.MANUAL or run.started_at is None
            or run.status in (RunStatus.MISSED, RunStatus.SKIPPED)):
        return None
    return max(0.0, (run.started_at - run.scheduled_for).total_seconds())


def jobs_page(runtime: Runtime, query: Query, now: datetime) -> JobsPage:
    runs = Runs(runtime.db)
    job = one(query, "job")
    found = runs.history(job or None, PAGE_ROWS + 1, before=cursor(query))
    more = len(found) > PAGE_ROWS
    shown = [RunLine(run, lateness_s(run)) for run in found[:PAGE_ROWS]]
    last = shown[-1].run if shown else None
    return JobsPage(
        now=now, jobs=runs.jobs_with_last_run(), job=job, runs=shown,
        next_link=next_link("/jobs", {"job": job}, last.scheduled_for, last.id)
        if more and last else None,
        chart=lateness_columns(shown))


def lateness_columns(lines: Sequence[RunLine]) -> Markup:
    """How late each run of the page started, oldest on the left."""
    timed = [line for line in reversed(lines) if line.lateness_s is not None]
    series = charts.Series("lateness", "chart-lateness",
                           tuple(line.lateness_s or 0.0 for line in timed))
    return charts.columns([f"{line.run.job_id} #{line.run.id}" for line in timed], [series],
                          unit=seconds_text, label_every=max(1, math.ceil(len(timed) / 4)),
                          title="How late each scheduled run of this page started",
                          empty="no scheduled run on this page")


# --- events ---


@dataclass(frozen=True)
class EventFilters:
    since: str
    types: list[str]
    importance: str
    container: str

    def as_query(self) -> dict[str, str | list[str]]:
        return {"since": self.since, "type": self.types, "importance": self.importance,
                "container": self.container}


@dataclass(frozen=True)
class EventsPage:
    now: datetime
    filters: EventFilters
    events: list[Event]
    next_link: str | None
    importances: tuple[str, ...] = tuple(i.value for i in Importance)


def event_filters(query: Query) -> EventFilters:
    types = [t.strip() for value in query.get("type", []) for t in value.split(",")
             if t.strip()]
    if sum(len(t) for t in types) > MAX_FILTER_CHARS:
        raise PageError(400, f"type: longer than {MAX_FILTER_CHARS} characters")
    importance = one(query, "importance")
    if importance and importance not in {i.value for i in Importance}:
        raise PageError(400, f"importance: {importance!r} is not one of "
                        f"{', '.join(Importance)}")
    return EventFilters(since=one(query, "since", DEFAULT_SINCE) or DEFAULT_SINCE,
                        types=types, importance=importance,
                        container=one(query, "container"))


def events_page(runtime: Runtime, query: Query, now: datetime) -> EventsPage:
    filters = event_filters(query)
    try:
        since = parse_since(filters.since, now)
    except ValueError as exc:
        raise PageError(400, f"since: {exc}") from None
    found = runtime.store.query_events(
        since=since, event_types=filters.types or None,
        min_importance=filters.importance or None, container=filters.container or None,
        before=cursor(query), limit=PAGE_ROWS + 1)
    more = len(found) > PAGE_ROWS
    shown = found[:PAGE_ROWS]
    last = shown[-1] if shown else None
    return EventsPage(
        now=now, filters=filters, events=shown,
        next_link=next_link("/events", filters.as_query(), last.timestamp, last.id or 0)
        if more and last else None)
