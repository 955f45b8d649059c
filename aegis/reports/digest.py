"""The day's digest and the morning status: SQL aggregates in, frozen dataclasses out.

``collect_day`` and ``collect_status`` ask the tables' owners for counts (a day's events
never reach Python; the key-decision list is fetched with a limit);
aegis/reports/markdown.py turns the dataclasses into markdown.

The digest leaves out its own bookkeeping (the evening_summary run, event and message),
so generating it twice for one date gives the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aegis.core.clock import UTC_ZONE, day_bounds
from aegis.core.config import DigestScope, Settings
from aegis.core.errors import UsageError
from aegis.reports.fleet import HostView, collect_hosts
from aegis.scheduling.repository import JobFailures, RunCounts, Runs, RunStatus
from aegis.scheduling.tasks import Tasks
from aegis.storage.events import (
    ContainerDecision,
    CriticalEvent,
    EventCount,
    EventType,
    Flapping,
    Importance,
    OpenEscalation,
)
from aegis.storage.outbox import ChannelFailures, Outbox
from aegis.storage.runtime import Runtime
from aegis.supervision.repository import Containers

DAY = timedelta(days=1)
DECISION_TYPES = (EventType.CONTAINER_RESTARTED, EventType.CONTAINER_ESCALATED,
                  EventType.CONTAINER_ACKNOWLEDGED)
DECISION_VERBS = {EventType.CONTAINER_RESTARTED: "restarted",
                  EventType.CONTAINER_ESCALATED: "escalated",
                  EventType.CONTAINER_ACKNOWLEDGED: "acknowledged"}
SELF_JOBS = ("evening_summary",)
SELF_EVENTS = (EventType.EVENING_SUMMARY,)
IMPORTANCE_ORDER = tuple(reversed(Importance))
# The columns of the runs table, in the order an operator reads them.
RUN_STATUSES = (RunStatus.OK, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.MISSED,
                RunStatus.SKIPPED, RunStatus.INTERRUPTED, RunStatus.RUNNING)
DECISIONS_SHOWN = 50
CRITICAL_SHOWN = 20
EVENT_TYPES_SHOWN = 15
LIST_LIMIT = 50
REASON_CHARS = 160


def day_window(day: date, zone: ZoneInfo = UTC_ZONE) -> tuple[datetime, datetime]:
    """The day ``day`` of ``zone`` (AEGIS_TIMEZONE) as UTC instants [start, end): 23 or 25
    hours long on the days the clocks change."""
    return day_bounds(day, zone)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The calendar day of ``zone`` that instant ``moment`` falls on."""
    return moment.astimezone(zone).date()


def parse_day(text: str, *, today: date) -> date:
    """A YYYY-MM-DD date that is not in the future (``today`` is AEGIS_TIMEZONE's)."""
    try:
        day = date.fromisoformat(text.strip())
        if len(text.strip()) != 10:
            raise ValueError(text)
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date (YYYY-MM-DD)") from None
    if day > today:
        raise UsageError(f"--date {day.isoformat()} is in the future (today is "
                         f"{today.isoformat()})")
    return day


# --- aggregates ---


@dataclass(frozen=True)
class DayDigest:
    day: date
    jobs: tuple[RunCounts, ...]
    events_by_importance: tuple[tuple[str, int], ...]
    events_by_type: tuple[tuple[str, int], ...]
    pending_tasks: int
    decision_counts: tuple[tuple[EventType, int], ...]
    decisions: tuple[ContainerDecision, ...]
    job_failures: tuple[JobFailures, ...]
    delivery_failures: tuple[ChannelFailures, ...]
    critical_events: tuple[CriticalEvent, ...]
    open_escalations: tuple[OpenEscalation, ...]
    flapping: tuple[Flapping, ...]
    zone: ZoneInfo = UTC_ZONE  # AEGIS_TIMEZONE: the day's bounds and the times shown
    host: str | None = None  # the one host reported on; None: the fleet

    def runs(self, *statuses: str) -> int:
        return sum(getattr(job, status) for job in self.jobs for status in statuses)

    @property
    def runs_completed(self) -> int:
        return self.runs("ok")

    @property
    def runs_failed(self) -> int:
        return self.runs("failed", "timeout", "interrupted")

    @property
    def events_total(self) -> int:
        return sum(count for _, count in self.events_by_importance)

    @property
    def events_critical(self) -> int:
        return dict(self.events_by_importance).get("critical", 0)

    @property
    def decisions_total(self) -> int:
        return sum(count for _, count in self.decision_counts)

    @property
    def repeat_failures(self) -> tuple[JobFailures, ...]:
        return tuple(f for f in self.job_failures if f.failures >= 2)

    def details(self) -> dict[str, Any]:
        """The numbers, for an event's details and a job's result."""
        return {
            "date": self.day.isoformat(),
            "timezone": self.zone.key,
            "scope": "fleet" if self.host is None else "host",
            "host": self.host,
            "runs": {status: self.runs(status) for status in RUN_STATUSES},
            "runs_completed": self.runs_completed,
            "runs_failed": self.runs_failed,
            "pending_tasks": self.pending_tasks,
            "events": self.events_total,
            "events_by_importance": dict(self.events_by_importance),
            "critical_events": self.events_critical,
            "decisions": dict(self.decision_counts),
            "open_escalations": len(self.open_escalations),
            "flapping_containers": len(self.flapping),
            "jobs_failing_repeatedly": [f.job_id for f in self.repeat_failures],
            "delivery_failures": sum(f.failures for f in self.delivery_failures),
        }


def _event_counts(counts: list[EventCount]
                  ) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    by_importance: dict[Importance, int] = {}
    by_type: dict[str, int] = {}
    for count in counts:
        by_importance[count.importance] = by_importance.get(count.importance, 0) + count.events
        by_type[count.event_type] = by_type.get(count.event_type, 0) + count.events
    return (tuple((i.value, by_importance[i]) for i in IMPORTANCE_ORDER if i in by_importance),
            tuple(sorted(by_type.items(), key=lambda item: (-item[1], item[0]))))


def _open_escalations(runtime: Runtime, as_of: datetime,
                      host: str | None = None) -> tuple[OpenEscalation, ...]:
    return tuple(runtime.store.open_escalations(as_of, LIST_LIMIT, host))


def scope_host(settings: Settings) -> str | None:
    """The host a digest covers by AEGIS_DIGEST_SCOPE: this one (host), or None (fleet)."""
    return None if settings.digest_scope == DigestScope.FLEET else settings.host


def collect_day(runtime: Runtime, day: date, host: str | None = None) -> DayDigest:
    """The digest of day ``day`` of AEGIS_TIMEZONE, from SQL aggregates: of what ``host``
    recorded (its events, runs, messages, its own and unassigned tasks), or of every host
    when ``host`` is None."""
    zone = runtime.settings.zone
    start, end = day_window(day, zone)
    store, runs = runtime.store, Runs(runtime.db)
    by_importance, by_type = _event_counts(store.counts_by_type(start, end, SELF_EVENTS,
                                                                host))
    decision_counts = store.counts_of(DECISION_TYPES, start, end, host)
    return DayDigest(
        day=day, zone=zone, host=host,
        jobs=tuple(runs.counts_by_job(start, end, SELF_JOBS, host)),
        events_by_importance=by_importance,
        events_by_type=by_type,
        pending_tasks=Tasks(runtime.db).pending_at(end, host),
        decision_counts=tuple((t, decision_counts[t]) for t in DECISION_TYPES
                              if t in decision_counts),
        decisions=tuple(store.decisions(DECISION_TYPES, start, end, DECISIONS_SHOWN, host)),
        job_failures=tuple(runs.failures_by_job(start, end, SELF_JOBS, host)),
        delivery_failures=tuple(Outbox(runtime.db).delivery_failures(start, end, host)),
        critical_events=tuple(store.critical_events(start, end, SELF_EVENTS, CRITICAL_SHOWN,
                                                    host)),
        open_escalations=_open_escalations(runtime, end, host),
        flapping=tuple(store.flapping(start, end, LIST_LIMIT, host)),
    )


# --- the morning status ---


@dataclass(frozen=True)
class HostHealth:
    host: str
    daemon: str  # running | stale | stopped | silent | unknown (no daemon row)
    heartbeat_age_s: float | None
    troubled_containers: int  # not well at their latest event since yesterday began
    open_escalations: int
    version: str | None = None
    supervised: int = 0
    unhealthy: int = 0


@dataclass(frozen=True)
class MorningStatus:
    day: date  # the day reported on (yesterday, in AEGIS_TIMEZONE)
    as_of: datetime
    jobs: tuple[RunCounts, ...]
    events_by_importance: tuple[tuple[str, int], ...]
    events_by_type: tuple[tuple[str, int], ...]
    pending_tasks: int
    open_escalations: tuple[OpenEscalation, ...]
    maintenance: tuple[tuple[str, str], ...]  # (host, container)
    hosts: tuple[HostHealth, ...]
    zone: ZoneInfo = UTC_ZONE

    def details(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "timezone": self.zone.key,
            "jobs": {job.job_id: {s: getattr(job, s) for s in RUN_STATUSES
                                  if getattr(job, s)} for job in self.jobs},
            "events": sum(count for _, count in self.events_by_importance),
            "events_by_importance": dict(self.events_by_importance),
            "events_by_type": dict(self.events_by_type),
            "pending_tasks": self.pending_tasks,
            "open_escalations": [f"{e.container}@{e.host}" for e in self.open_escalations],
            "maintenance": [f"{container}@{host}" for host, container in self.maintenance],
            "hosts": {h.host: {"daemon": h.daemon, "troubled_containers":
                               h.troubled_containers, "open_escalations": h.open_escalations,
                               "supervised": h.supervised, "unhealthy": h.unhealthy}
                      for h in self.hosts},
        }


def collect_status(runtime: Runtime, day: date, now: datetime) -> MorningStatus:
    """The numbers of day ``day`` (yesterday, in AEGIS_TIMEZONE) and the fleet as it is
    at ``now``, after the night."""
    zone = runtime.settings.zone
    start, end = day_window(day, zone)
    store = runtime.store
    by_importance, by_type = _event_counts(store.counts_by_type(start, end))
    escalations = _open_escalations(runtime, now)
    maintenance = tuple((found.host, found.container)
                        for found in Containers(runtime.db).in_maintenance(now, LIST_LIMIT))
    daemons = {view.host: view for view in collect_hosts(runtime, now)}
    troubled = store.troubled_containers(start, now)
    hosts = sorted(set(daemons) | set(troubled) | {e.host for e in escalations})
    return MorningStatus(
        day=day, zone=zone, as_of=now,
        jobs=tuple(Runs(runtime.db).counts_by_job(start, end)),
        events_by_importance=by_importance, events_by_type=by_type,
        pending_tasks=Tasks(runtime.db).pending_at(now),
        open_escalations=escalations, maintenance=maintenance,
        hosts=tuple(_health(host, daemons.get(host), troubled.get(host, 0),
                            sum(1 for e in escalations if e.host == host))
                    for host in hosts),
    )


def _health(host: str, view: HostView | None, troubled: int, escalated: int) -> HostHealth:
    if view is None:  # seen in events only: its daemon row is gone (forgotten) or never was
        return HostHealth(host, "unknown", None, troubled, escalated)
    return HostHealth(host, view.status, view.heartbeat_age_s, troubled, escalated,
                      version=view.version, supervised=view.supervised,
                      unhealthy=view.unhealthy)
