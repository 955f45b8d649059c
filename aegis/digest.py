"""The day's digest and the morning status: SQL aggregates in, markdown out.

``collect_day`` and ``collect_status`` ask the database for counts (a day's events never
reach Python; the key-decision list is fetched with a limit) and return frozen
dataclasses; ``render_day`` and ``render_status`` turn those into markdown and read
nothing else, so the same data always gives the same bytes.

The digest leaves out its own bookkeeping (the evening_summary run, event and message),
so generating it twice for one date gives the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aegis.errors import UsageError

DAY = timedelta(days=1)
DECISION_TYPES = ("container_restarted", "container_escalated", "container_acknowledged")
DECISION_VERBS = {"container_restarted": "restarted", "container_escalated": "escalated",
                  "container_acknowledged": "acknowledged"}
SELF_JOBS = ("evening_summary",)
SELF_EVENTS = ("evening_summary",)
IMPORTANCE_ORDER = ("critical", "high", "medium", "low")
RUN_STATUSES = ("ok", "failed", "timeout", "missed", "skipped", "interrupted", "running")
DECISIONS_SHOWN = 50
CRITICAL_SHOWN = 20
EVENT_TYPES_SHOWN = 15
LIST_LIMIT = 50
REASON_CHARS = 160
STALE_HEARTBEATS = 3  # a daemon silent for this many heartbeat intervals is stale


def day_window(day: date) -> tuple[datetime, datetime]:
    """The UTC day ``day`` as [start, end)."""
    start = datetime.combine(day, time(0, 0), tzinfo=UTC)
    return start, start + DAY


def parse_day(text: str, *, today: date) -> date:
    """A YYYY-MM-DD date that is not in the future (UTC)."""
    try:
        day = date.fromisoformat(text.strip())
        if len(text.strip()) != 10:
            raise ValueError(text)
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date (YYYY-MM-DD)") from None
    if day > today:
        raise UsageError(f"--date {day.isoformat()} is in the future (today is "
                         f"{today.isoformat()} UTC)")
    return day


# --- aggregates ---


@dataclass(frozen=True)
class JobDay:
    job_id: str
    ok: int = 0
    failed: int = 0
    timeout: int = 0
    missed: int = 0
    skipped: int = 0
    interrupted: int = 0
    running: int = 0


@dataclass(frozen=True)
class Decision:
    timestamp: datetime
    event_type: str
    container: str
    host: str
    reason: str


@dataclass(frozen=True)
class Escalation:
    container: str
    host: str
    since: datetime
    reason: str


@dataclass(frozen=True)
class Flapping:
    container: str
    host: str
    restarts: int


@dataclass(frozen=True)
class Failure:
    name: str  # a job id or a notification channel
    failures: int
    last_error: str


@dataclass(frozen=True)
class CriticalEvent:
    timestamp: datetime
    event_type: str
    host: str
    summary: str


@dataclass(frozen=True)
class DayDigest:
    day: date
    jobs: tuple[JobDay, ...]
    events_by_importance: tuple[tuple[str, int], ...]
    events_by_type: tuple[tuple[str, int], ...]
    pending_tasks: int
    decision_counts: tuple[tuple[str, int], ...]
    decisions: tuple[Decision, ...]
    job_failures: tuple[Failure, ...]
    delivery_failures: tuple[Failure, ...]
    critical_events: tuple[CriticalEvent, ...]
    open_escalations: tuple[Escalation, ...]
    flapping: tuple[Flapping, ...]

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
    def repeat_failures(self) -> tuple[Failure, ...]:
        return tuple(f for f in self.job_failures if f.failures >= 2)

    def details(self) -> dict[str, Any]:
        """The numbers, for an event's details and a job's result."""
        return {
            "date": self.day.isoformat(),
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
            "jobs_failing_repeatedly": [f.name for f in self.repeat_failures],
            "delivery_failures": sum(f.failures for f in self.delivery_failures),
        }


def _jobs(rows: list[dict[str, Any]]) -> tuple[JobDay, ...]:
    return tuple(JobDay(row["job_id"], *(int(row[s]) for s in RUN_STATUSES)) for row in rows)


def _event_counts(rows: list[dict[str, Any]]
                  ) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    by_importance: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for row in rows:
        count = int(row["events"])
        by_importance[row["importance"]] = by_importance.get(row["importance"], 0) + count
        by_type[row["event_type"]] = by_type.get(row["event_type"], 0) + count
    return (tuple((i, by_importance[i]) for i in IMPORTANCE_ORDER if i in by_importance),
            tuple(sorted(by_type.items(), key=lambda item: (-item[1], item[0]))))


def _open_escalations(db: Any, as_of: datetime) -> tuple[Escalation, ...]:
    return tuple(Escalation(r["container"], r["host"], r["since"], r["reason"])
                 for r in db.fetch_all("digest_open_escalations", as_of=as_of,
                                       limit=LIST_LIMIT))


def _failures(rows: list[dict[str, Any]], key: str) -> tuple[Failure, ...]:
    return tuple(Failure(r[key], int(r["failures"]), r["last_error"] or "") for r in rows)


def collect_day(db: Any, day: date) -> DayDigest:
    """The digest of UTC day ``day``, from SQL aggregates."""
    start, end = day_window(day)
    window = {"start": start, "end": end}
    by_importance, by_type = _event_counts(db.fetch_all(
        "digest_event_counts", **window, exclude_types=list(SELF_EVENTS)))
    decision_counts = {r["event_type"]: int(r["events"]) for r in db.fetch_all(
        "digest_decision_counts", **window, types=list(DECISION_TYPES))}
    return DayDigest(
        day=day,
        jobs=_jobs(db.fetch_all("digest_job_runs", **window, exclude_jobs=list(SELF_JOBS))),
        events_by_importance=by_importance,
        events_by_type=by_type,
        pending_tasks=int(db.fetch_one("digest_pending_tasks", as_of=end)["pending"]),
        decision_counts=tuple((t, decision_counts[t]) for t in DECISION_TYPES
                              if t in decision_counts),
        decisions=tuple(Decision(r["timestamp"], r["event_type"], r["container"], r["host"],
                                 r["reason"])
                        for r in db.fetch_all("digest_decisions", **window,
                                              types=list(DECISION_TYPES),
                                              limit=DECISIONS_SHOWN)),
        job_failures=_failures(db.fetch_all("digest_job_failures", **window,
                                            exclude_jobs=list(SELF_JOBS)), "job_id"),
        delivery_failures=_failures(db.fetch_all("digest_delivery_failures", **window),
                                    "channel"),
        critical_events=tuple(CriticalEvent(r["timestamp"], r["event_type"], r["host"],
                                            r["summary"])
                              for r in db.fetch_all("digest_critical_events", **window,
                                                    exclude_types=list(SELF_EVENTS),
                                                    limit=CRITICAL_SHOWN)),
        open_escalations=_open_escalations(db, end),
        flapping=tuple(Flapping(r["container"], r["host"], int(r["restarts"]))
                       for r in db.fetch_all("digest_flapping", **window, limit=LIST_LIMIT)),
    )


# --- the morning status ---


@dataclass(frozen=True)
class HostHealth:
    host: str
    daemon: str  # running | stale | stopped | unknown
    heartbeat_age_s: float | None
    troubled_containers: int
    open_escalations: int


@dataclass(frozen=True)
class MorningStatus:
    day: date  # the day reported on (yesterday)
    as_of: datetime
    jobs: tuple[JobDay, ...]
    events_by_importance: tuple[tuple[str, int], ...]
    events_by_type: tuple[tuple[str, int], ...]
    pending_tasks: int
    open_escalations: tuple[Escalation, ...]
    maintenance: tuple[tuple[str, str], ...]  # (host, container)
    hosts: tuple[HostHealth, ...]

    def details(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            "jobs": {job.job_id: {s: getattr(job, s) for s in RUN_STATUSES
                                  if getattr(job, s)} for job in self.jobs},
            "events": sum(count for _, count in self.events_by_importance),
            "events_by_importance": dict(self.events_by_importance),
            "events_by_type": dict(self.events_by_type),
            "pending_tasks": self.pending_tasks,
            "open_escalations": [f"{e.container}@{e.host}" for e in self.open_escalations],
            "maintenance": [f"{container}@{host}" for host, container in self.maintenance],
            "hosts": {h.host: {"daemon": h.daemon, "troubled_containers":
                               h.troubled_containers, "open_escalations": h.open_escalations}
                      for h in self.hosts},
        }


def daemon_health(status: str, last_heartbeat_at: datetime, now: datetime,
                  heartbeat_interval_s: float) -> str:
    """running, stale (no heartbeat for a few intervals) or stopped."""
    if status == "stopped":
        return "stopped"
    age_s = (now - last_heartbeat_at).total_seconds()
    return "stale" if age_s > STALE_HEARTBEATS * heartbeat_interval_s else "running"


def collect_status(db: Any, day: date, now: datetime,
                   heartbeat_interval_s: float) -> MorningStatus:
    """The numbers of UTC day ``day`` (yesterday) and the fleet as it is at ``now``."""
    start, end = day_window(day)
    by_importance, by_type = _event_counts(db.fetch_all(
        "digest_event_counts", start=start, end=end, exclude_types=[]))
    escalations = _open_escalations(db, now)
    maintenance = tuple((r["host"], r["container"]) for r in db.fetch_all(
        "status_maintenance_containers", as_of=now, limit=LIST_LIMIT))
    daemons = {r["host"]: r for r in db.fetch_all("status_daemons")}
    troubled = {r["host"]: int(r["containers"]) for r in db.fetch_all(
        "status_troubled_containers", start=start, end=now)}
    hosts = sorted(set(daemons) | set(troubled) | {e.host for e in escalations})
    return MorningStatus(
        day=day, as_of=now,
        jobs=_jobs(db.fetch_all("digest_job_runs", start=start, end=end, exclude_jobs=[])),
        events_by_importance=by_importance, events_by_type=by_type,
        pending_tasks=int(db.fetch_one("digest_pending_tasks", as_of=now)["pending"]),
        open_escalations=escalations, maintenance=maintenance,
        hosts=tuple(HostHealth(
            host=host,
            daemon=daemon_health(daemons[host]["status"], daemons[host]["last_heartbeat_at"],
                                 now, heartbeat_interval_s) if host in daemons else "unknown",
            heartbeat_age_s=round((now - daemons[host]["last_heartbeat_at"]).total_seconds(),
                                  1) if host in daemons else None,
            troubled_containers=troubled.get(host, 0),
            open_escalations=sum(1 for e in escalations if e.host == host))
            for host in hosts),
    )


# --- markdown ---


def _text(value: str, limit: int = REASON_CHARS) -> str:
    """One line of untrusted text (container names, errors) safe in a list or a table."""
    line = " ".join(value.split()).replace("|", "\\|").replace("`", "'")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _where(container: str, host: str) -> str:
    return f"**{_text(container or '?', 80)}** on {_text(host, 80)}"


def _runs_table(jobs: tuple[JobDay, ...]) -> list[str]:
    if not jobs:
        return ["No job runs."]
    lines = ["| job | " + " | ".join(RUN_STATUSES) + " |",
             "|---|" + "---:|" * len(RUN_STATUSES)]
    lines += [f"| {_text(job.job_id)} | "
              + " | ".join(str(getattr(job, s)) for s in RUN_STATUSES) + " |" for job in jobs]
    return lines


def _events_lines(by_importance: tuple[tuple[str, int], ...],
                  by_type: tuple[tuple[str, int], ...]) -> list[str]:
    total = sum(count for _, count in by_importance)
    if not total:
        return ["No events."]
    lines = ["By importance: " + ", ".join(f"{name} {count}" for name, count in by_importance)
             + ".", "", "| event type | events |", "|---|---:|"]
    lines += [f"| {_text(name)} | {count} |" for name, count in by_type[:EVENT_TYPES_SHOWN]]
    rest = by_type[EVENT_TYPES_SHOWN:]
    if rest:
        lines.append(f"| {len(rest)} other types | {sum(count for _, count in rest)} |")
    return lines


def _escalation_line(e: Escalation) -> str:
    return f"- Open escalation: {_where(e.container, e.host)} since {_stamp(e.since)} — " \
           f"{_text(e.reason)}"


def render_day(digest: DayDigest) -> str:
    """The digest as markdown: the same digest always gives the same text."""
    start, end = day_window(digest.day)
    out = [f"# aegis digest — {digest.day.isoformat()}", "",
           f"UTC day {_stamp(start)} to {_stamp(end)}.", "", "## Summary", "",
           f"- Runs: {digest.runs_completed} completed, {digest.runs_failed} failed, "
           f"{digest.runs('running')} still running, {digest.runs('missed')} missed",
           f"- Tasks pending at the end of the day: {digest.pending_tasks}",
           f"- Events: {digest.events_total} recorded, {digest.events_critical} critical",
           "- Decisions: " + (", ".join(f"{count} {DECISION_VERBS[t]}"
                                        for t, count in digest.decision_counts) or "none"),
           f"- Open escalations: {len(digest.open_escalations)}",
           "", "## Runs", "", *_runs_table(digest.jobs),
           "", "## Events", "", *_events_lines(digest.events_by_importance,
                                                digest.events_by_type),
           "", "## Key decisions", ""]
    if digest.decisions:
        out += [f"- {_clock(d.timestamp)} {DECISION_VERBS.get(d.event_type, d.event_type)} "
                f"{_where(d.container, d.host)} — {_text(d.reason)}" for d in digest.decisions]
        hidden = digest.decisions_total - len(digest.decisions)
        if hidden > 0:
            out.append(f"- … and {hidden} more (`aegis events --type container_restarted` "
                       "and friends list them all)")
    else:
        out.append("No restarts, escalations or acknowledgements.")
    out += ["", "## Errors", ""]
    errors: list[str] = []
    errors += [f"- Job **{_text(f.name)}** failed {_times(f.failures)}; "
               f"last: {_text(f.last_error)}" for f in digest.job_failures]
    errors += [f"- Channel **{_text(f.name)}**: {f.failures} undelivered "
               f"message{'' if f.failures == 1 else 's'}; last: {_text(f.last_error)}"
               for f in digest.delivery_failures]
    errors += [f"- {_clock(c.timestamp)} critical {_text(c.event_type)} on {_text(c.host)}: "
               f"{_text(c.summary)}" for c in digest.critical_events]
    hidden_critical = digest.events_critical - len(digest.critical_events)
    if hidden_critical > 0:
        errors.append(f"- … and {hidden_critical} more critical events")
    out += errors or ["None."]
    out += ["", "## Tomorrow's priorities", ""]
    priorities = [_escalation_line(e) for e in digest.open_escalations]
    priorities += [f"- Flapping: {_where(f.container, f.host)} restarted {_times(f.restarts)} today"
                   for f in digest.flapping]
    priorities += [f"- Job **{_text(f.name)}** failed {_times(f.failures)} today"
                   for f in digest.repeat_failures]
    out += priorities or ["Nothing needs attention."]
    return "\n".join(out) + "\n"


def render_status(status: MorningStatus) -> str:
    """The morning status: compact markdown for the journal channel."""
    total = sum(count for _, count in status.events_by_importance)
    failing = [job for job in status.jobs if job.failed or job.timeout or job.missed]
    out = [f"Yesterday ({status.day.isoformat()}): "
           f"{sum(j.ok for j in status.jobs)} runs ok, "
           f"{sum(j.failed for j in status.jobs)} failed, "
           f"{sum(j.timeout for j in status.jobs)} timed out, "
           f"{sum(j.missed for j in status.jobs)} missed; {total} events ("
           + (", ".join(f"{name} {count}" for name, count in status.events_by_importance)
              or "none") + ").",
           f"Pending tasks: {status.pending_tasks}. Open escalations: "
           f"{len(status.open_escalations)}.", ""]
    if failing:
        out += ["**Jobs with problems**"]
        out += [f"- {_text(j.job_id)}: {j.failed} failed, {j.timeout} timed out, "
                f"{j.missed} missed" for j in failing]
        out.append("")
    if status.events_by_type:
        out += ["**Events by type**", ", ".join(
            f"{_text(name)} {count}" for name, count in status.events_by_type[:EVENT_TYPES_SHOWN]),
            ""]
    if status.open_escalations:
        out += ["**Open escalations**", *(f"- {_where(e.container, e.host)} since "
                                          f"{_stamp(e.since)}: {_text(e.reason)}"
                                          for e in status.open_escalations), ""]
    out.append("**In maintenance**: "
               + (", ".join(_where(c, h) for h, c in status.maintenance) or "none"))
    out += ["", "**Fleet**"]
    out += [f"- {_text(h.host, 80)}: daemon {h.daemon}"
            + (f" (heartbeat {h.heartbeat_age_s:g}s ago)" if h.heartbeat_age_s is not None
               else "")
            + f", {h.troubled_containers} container(s) unwell, "
            f"{h.open_escalations} escalated" for h in status.hosts] or ["- no hosts seen"]
    return "\n".join(out) + "\n"


def trim(text: str, limit: int) -> str:
    """``text`` cut at a line boundary to at most ``limit`` characters, marked as cut."""
    if len(text) <= limit:
        return text
    marker = "\n… (trimmed; the journal file has the whole digest)"
    if limit <= len(marker):
        return text[:limit]
    head = text[: limit - len(marker)]
    cut = head.rfind("\n")
    return (head[:cut] if cut > 0 else head) + marker
