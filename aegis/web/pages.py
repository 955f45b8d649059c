"""What the overview and a container's page show, read through the tables' owners.

Each page is a handful of aggregate or bounded queries (a window, an index, a limit), so
it answers in milliseconds whatever the size of the history; the rows become frozen
dataclasses the templates lay out. Every function takes ``now``: nothing here reads a
clock, so a page rendered for a given moment is the same every time.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from markupsafe import Markup

from aegis.core import clock
from aegis.core.config import Settings
from aegis.core.durations import format_duration_s
from aegis.scheduling.heartbeat import daemon_status
from aegis.scheduling.repository import JobRun, JobWithLastRun, Lateness, Runs
from aegis.storage.events import INCIDENT_ENDS, Event, EventType, Importance, ProbeOutput
from aegis.storage.outbox import Outbox, OutboxStatus
from aegis.storage.runtime import Runtime
from aegis.supervision.containers import ContainerView, HostWindows, view
from aegis.supervision.protocol.labels import (
    AUTOHEAL_STOP_TIMEOUT,
    ENABLE,
    KNOWN,
    MAINTENANCE,
    MAX_RESTARTS,
    PROTECT,
    STOP_TIMEOUT,
    STRIKE_INTERVAL,
    autoheal_label,
    misspelt,
    parse_labels,
)
from aegis.supervision.protocol.strikes import BUDGET_WINDOW, Phase, ShownState
from aegis.supervision.protocol.windows import LABELS as WINDOW_LABELS
from aegis.supervision.protocol.windows import label_window
from aegis.supervision.repository import ContainerRow, Containers, HostContainers, LogLine
from aegis.web import charts
from aegis.web.render import seconds_text, zone_name

REFRESH_S = 30
CHART_DAYS = 30
RECENT = timedelta(hours=24)
LIST_LIMIT = 100
IMPORTANT_EVENTS = 10
CONTAINER_EVENTS = 200
PROBE_OUTPUTS = 5
ACTIONS = {EventType.CONTAINER_RESTARTED: "restarts", EventType.CONTAINER_ESCALATED: "escalations"}


class PageError(Exception):
    """A page that cannot be shown: an unknown container, a filter that does not parse.
    ``status`` is the HTTP status; the message is one line for the person asking."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HostLine:
    host: str
    status: str  # heartbeat.DaemonStatus
    last_heartbeat_at: datetime | None
    containers: int
    in_incident: int


@dataclass(frozen=True)
class ContainerLine:
    """A container as its row says, with the phase and since when it is in it."""

    view: ContainerView
    phase: Phase
    since: datetime | None  # the latest strike
    maintenance: bool


@dataclass(frozen=True)
class Overview:
    now: datetime
    hosts: list[HostLine]
    incidents: list[ContainerLine]  # escalated first
    probe_outputs: dict[tuple[str, str], str]  # (host, name) of an incident -> the latest
    of_note: list[ContainerLine]  # unhealthy, struck or in maintenance, no incident
    jobs: list[JobWithLastRun]
    problem_runs: list[JobRun]
    important_events: list[Event]
    events_by_importance: dict[str, int]
    outbox_pending: int
    outbox_undelivered: int
    actions_chart: Markup
    lateness_chart: Markup
    refresh_s: int = REFRESH_S


def overview(runtime: Runtime, now: datetime, zone: tzinfo) -> Overview:
    runs, containers = Runs(runtime.db), Containers(runtime.db)
    windows = HostWindows.of(runtime.settings)
    lines = [line(row, now, windows) for row in containers.of_note(now, LIST_LIMIT)]
    incidents = [c for c in lines if c.phase != Phase.OK]
    since = now - RECENT
    counts = runtime.store.counts_by_importance(since)
    outbox = Outbox(runtime.db).counts_by_status(since)
    return Overview(
        now=now, hosts=hosts(runtime, now), incidents=incidents,
        probe_outputs=runtime.store.latest_probe_outputs(
            [(c.view.host, c.view.name) for c in incidents]),
        of_note=[c for c in lines if c.phase == Phase.OK], jobs=runs.jobs_with_last_run(),
        problem_runs=runs.problem_runs(since, now, LIST_LIMIT),
        important_events=runtime.store.query_events(
            since=since, min_importance=Importance.HIGH, limit=IMPORTANT_EVENTS),
        events_by_importance={i.value: counts.get(i, 0) for i in Importance},
        outbox_pending=sum(c.messages for c in outbox if c.status == OutboxStatus.PENDING),
        outbox_undelivered=sum(c.messages for c in outbox if c.status in (
            OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE)),
        actions_chart=actions_chart(runtime, now, zone),
        lateness_chart=lateness_chart(runs.lateness(since, now)))


def line(row: ContainerRow, now: datetime, windows: HostWindows | None = None
         ) -> ContainerLine:
    shown = view(row, now, windows)
    return ContainerLine(view=shown, phase=row.phase, since=row.strike_at,
                         maintenance=shown.state == ShownState.MAINTENANCE)


def hosts(runtime: Runtime, now: datetime) -> list[HostLine]:
    """Every host with a daemon or a container, its daemon's liveness and its counts."""
    interval_s = runtime.settings.heartbeat_interval_s
    daemons = {daemon.host: daemon for daemon in Runs(runtime.db).daemons()}
    counts = Containers(runtime.db).per_host()
    found = []
    for host in sorted(daemons.keys() | counts.keys()):
        daemon, count = daemons.get(host), counts.get(host, HostContainers())
        last_heartbeat_at = daemon.last_heartbeat_at if daemon else None
        status = daemon_status(daemon.status if daemon else None, last_heartbeat_at, now,
                               interval_s)
        found.append(HostLine(host=host, status=status.value,
                              last_heartbeat_at=last_heartbeat_at,
                              containers=count.containers, in_incident=count.in_incident))
    return found


def actions_chart(runtime: Runtime, now: datetime, zone: tzinfo) -> Markup:
    """Restarts and escalations per day of the last CHART_DAYS days, today last."""
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    start = datetime.combine(days[0], datetime.min.time(), zone)
    counts: dict[tuple[date, str], float] = {}
    for daily in runtime.store.daily_actions(start, now, zone_name(zone)):
        counts[(daily.day, daily.event_type)] = float(daily.events)
    series = [charts.Series(name, f"chart-{name}",
                            tuple(counts.get((day, event_type), 0.0) for day in days))
              for event_type, name in ACTIONS.items()]
    total = {s.name: int(sum(s.values)) for s in series}
    return charts.columns(
        [day.strftime("%m-%d") for day in days], series, label_every=7,
        title=f"Restarts and escalations per day over {CHART_DAYS} days (restarts: "
              f"{total['restarts']}, escalations: {total['escalations']})",
        empty=f"no restart or escalation in {CHART_DAYS} days")


def lateness_chart(jobs: Sequence[Lateness]) -> Markup:
    """How late each job's scheduled runs started: median, 95th percentile, worst."""
    figures = {"median": [job.p50_s for job in jobs], "p95": [job.p95_s for job in jobs],
               "worst": [job.max_s for job in jobs]}
    series = [charts.Series(name, f"chart-{name}", tuple(float(v or 0.0) for v in values))
              for name, values in figures.items()]
    return charts.bars([job.job_id for job in jobs], series, unit=seconds_text,
                       title="How late scheduled job runs started in the last 24 hours",
                       empty="no scheduled run in the last 24 hours")


# --- one container ---


@dataclass(frozen=True)
class Incident:
    number: int
    events: list[Event]  # oldest first
    opened_at: datetime
    closed_at: datetime | None  # None: still open
    # its triage class, as its latest event that names one says (a class of a later version
    # of aegis, recorded by another host, shows as written)
    triage_class: str | None = None


@dataclass(frozen=True)
class LabelLine:
    key: str
    value: str | None  # as set; None: not set
    effect: str


@dataclass(frozen=True)
class ActionCounts:
    """What aegis did to one container lately."""

    restarts: int
    failed_restarts: int
    escalations: int


@dataclass(frozen=True)
class ContainerPage:
    now: datetime
    local: bool  # a container of this daemon's host: the commands run here
    line: ContainerLine
    row: ContainerRow
    restarts_in_budget: list[datetime]
    actions: ActionCounts  # of the last 30 days
    incidents: list[Incident]  # newest first
    other_events: list[Event]  # newest first
    probes: list[ProbeOutput]
    # the line of the latest incident's log that last read the container's log lines (a
    # restart's, an escalation's); None: none read
    log_tail: LogLine | None
    labels: list[LabelLine]
    commands: list[str]


def container_page(runtime: Runtime, host: str, name: str, now: datetime) -> ContainerPage:
    row = Containers(runtime.db).by_name(host, name)
    if row is None:
        raise PageError(404, f"no container {name!r} on host {host!r}")
    store = runtime.store
    events = store.container_events(host, name, CONTAINER_EVENTS)
    incidents, others = incidents_of(events)
    counted = store.container_action_counts(host, name, now - timedelta(days=CHART_DAYS))
    actions = ActionCounts(restarts=counted.get(EventType.CONTAINER_RESTARTED, 0),
                           failed_restarts=counted.get(EventType.CONTAINER_RESTART_FAILED, 0),
                           escalations=counted.get(EventType.CONTAINER_ESCALATED, 0))
    local = host == runtime.settings.host
    shown = line(row, now, HostWindows.of(runtime.settings))
    return ContainerPage(
        now=now, local=local, line=shown, row=row,
        restarts_in_budget=sorted(t for t in row.restarts if now - t < BUDGET_WINDOW),
        actions=actions, incidents=incidents, other_events=others,
        probes=store.probe_outputs(host, name, PROBE_OUTPUTS),
        log_tail=next((kept for kept in reversed(row.incident_log)
                       if kept.log_tail is not None), None),
        labels=labels_in_effect(row.labels, runtime.settings),
        commands=commands(name, shown))


def incidents_of(events: Sequence[Event]) -> tuple[list[Incident], list[Event]]:
    """Events (newest first) grouped by the incident they belong to, newest first; the
    events of no incident (a bad label, maintenance) apart."""
    grouped: dict[int, list[Event]] = {}
    others = []
    for event in events:
        number = event.details.get("incident")
        if isinstance(number, int) and number > 0:
            grouped.setdefault(number, []).append(event)
        else:
            others.append(event)
    incidents = []
    for number, found in sorted(grouped.items(), reverse=True):
        ordered = sorted(found, key=lambda e: (e.timestamp, e.id or 0))
        closing = ordered[-1].event_type in INCIDENT_ENDS
        triage_class = next((str(e.details["class"]) for e in reversed(ordered)
                      if e.details.get("class")), None)
        incidents.append(Incident(number=number, events=ordered,
                                  opened_at=ordered[0].timestamp,
                                  closed_at=ordered[-1].timestamp if closing else None,
                                  triage_class=triage_class))
    return incidents, others


def labels_in_effect(labels: dict[str, str], settings: Settings) -> list[LabelLine]:
    """aegis's labels as set on the container (and docker-autoheal's that it reads), and
    what each does to it; the thresholds a label leaves unset come from this daemon's
    settings."""
    autoheal = autoheal_label(settings)
    parsed = parse_labels(labels, autoheal)
    interval = parsed.strike_interval_s
    restarts = parsed.max_restarts
    stand_ins = {} if autoheal is None else {autoheal: ENABLE,
                                             AUTOHEAL_STOP_TIMEOUT: STOP_TIMEOUT}
    by = {own: f" (by {key})" for key, own in stand_ins.items()
          if key in labels and own not in labels}
    effects = {
        ENABLE: {True: "supervised even without a health check or outside the scope",
                   False: "never supervised (opted out)",
                   None: f"supervised by scope ({settings.docker_scope.value})"}[parsed.enable]
        + by.get(ENABLE, ""),
        PROTECT: "struck and escalated, never restarted" if parsed.protect
        else "may be restarted",
        MAINTENANCE: "no action while the label is set" if parsed.maintenance
        else "not in maintenance by label",
        STRIKE_INTERVAL: f"{format_duration_s(interval)} between strikes" if interval
        else f"{format_duration_s(settings.strike_interval_s)} between strikes "
             "(AEGIS_STRIKE_INTERVAL)",
        MAX_RESTARTS: f"{restarts} restarts an hour" if restarts is not None
        else f"{settings.max_restarts_per_hour} restarts an hour (AEGIS_MAX_RESTARTS)",
        STOP_TIMEOUT: f"{format_duration_s(parsed.stop_timeout_s)} to stop before a kill"
        + by.get(STOP_TIMEOUT, "") if parsed.stop_timeout_s
        else "the container's own stop timeout, else "
             f"{format_duration_s(settings.default_stop_timeout_s)} "
             "(AEGIS_DEFAULT_STOP_TIMEOUT)",
    }
    found = [LabelLine(key, labels.get(key), effect) for key, effect in effects.items()]
    found += window_lines(labels, settings)
    found += [LabelLine(key, labels[key], f"docker-autoheal's, read as {own}"
                        + (f" ({own} is set: it wins when valid)" if own in labels else ""))
              for key, own in stand_ins.items() if key in labels]
    for key in sorted(set(labels) - set(KNOWN) - set(stand_ins)):
        meant = misspelt(key)
        found.append(LabelLine(key, labels[key], f"does nothing (did you mean {meant}?)"
                               if meant else "not aegis's: left alone"))
    return found


def window_lines(labels: dict[str, str], settings: Settings) -> list[LabelLine]:
    """The maintenance window labels set, and the window they make (or why it is
    ignored)."""
    window, problem = label_window(labels)
    if window is not None:
        effect = f"maintenance window {window.in_zone(clock.zone(settings.timezone)).describe()}"
    else:
        effect = f"ignored: {problem}"
    return [LabelLine(key, labels[key], effect) for key in WINDOW_LABELS if key in labels]


def commands(name: str, shown: ContainerLine) -> list[str]:
    """The commands an operator runs on the container's host to act on it."""
    quoted = shlex.quote(name)
    found = []
    if shown.phase == Phase.ESCALATED:
        found.append(f"aegis ack {quoted}")
    if shown.view.maintenance_until is not None and shown.maintenance:
        found.append(f"aegis maintenance {quoted} --off")
    else:
        found.append(f"aegis maintenance {quoted} --for 1h")
    found.append(f"aegis events --container {quoted} --since 7d")
    return found
