"""The digest and the morning status as markdown. Pure functions of the dataclasses of
aegis/reports/digest.py: the same data always gives the same bytes."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aegis.reports.digest import (
    DECISION_VERBS,
    EVENT_TYPES_SHOWN,
    REASON_CHARS,
    RUN_STATUSES,
    DayDigest,
    HostHealth,
    MorningStatus,
    day_window,
)
from aegis.scheduling.repository import RunCounts
from aegis.storage.events import OpenEscalation

# The order a fleet's hosts are counted in: the ones that need a look first.
HOST_STATES = ("silent", "stale", "unknown", "running", "stopped")


def _text(value: str, limit: int = REASON_CHARS) -> str:
    """One line of untrusted text (container names, errors) safe in a list or a table."""
    line = " ".join(value.split()).replace("|", "\\|").replace("`", "'")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _clock(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


def _stamp(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _where(container: str, host: str) -> str:
    return f"**{_text(container or '?', 80)}** on {_text(host, 80)}"


def _runs_table(jobs: tuple[RunCounts, ...]) -> list[str]:
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


def _escalation_line(e: OpenEscalation, zone: ZoneInfo) -> str:
    return (f"- Open escalation: {_where(e.container, e.host)} since "
            f"{_stamp(e.since, zone)} — {_text(e.reason)}")


def render_day(digest: DayDigest) -> str:
    """The digest as markdown: the same digest always gives the same text."""
    zone = digest.zone
    start, end = day_window(digest.day, zone)
    scope = "every host" if digest.host is None else f"host {_text(digest.host, 80)}"
    out = [f"# aegis digest — {digest.day.isoformat()}", "",
           f"{zone.key} day {_stamp(start, zone)} to {_stamp(end, zone)}, {scope}.", "",
           "## Summary", "",
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
        out += [f"- {_clock(d.timestamp, zone)} {DECISION_VERBS.get(d.event_type, d.event_type)} "
                f"{_where(d.container, d.host)} — {_text(d.reason)}" for d in digest.decisions]
        hidden = digest.decisions_total - len(digest.decisions)
        if hidden > 0:
            out.append(f"- … and {hidden} more (`aegis events --type container_restarted` "
                       "and friends list them all)")
    else:
        out.append("No restarts, escalations or acknowledgements.")
    out += ["", "## Errors", ""]
    errors: list[str] = []
    errors += [f"- Job **{_text(f.job_id)}** failed {_times(f.failures)}; "
               f"last: {_text(f.last_error)}" for f in digest.job_failures]
    errors += [f"- Channel **{_text(f.channel)}**: {f.failures} undelivered "
               f"message{'' if f.failures == 1 else 's'}; last: {_text(f.last_error)}"
               for f in digest.delivery_failures]
    errors += [f"- {_clock(c.timestamp, zone)} critical {_text(c.event_type)} on {_text(c.host)}: "
               f"{_text(c.summary)}" for c in digest.critical_events]
    hidden_critical = digest.events_critical - len(digest.critical_events)
    if hidden_critical > 0:
        errors.append(f"- … and {hidden_critical} more critical events")
    out += errors or ["None."]
    out += ["", "## Tomorrow's priorities", ""]
    priorities = [_escalation_line(e, zone) for e in digest.open_escalations]
    priorities += [f"- Flapping: {_where(f.container, f.host)} restarted {_times(f.restarts)} today"
                   for f in digest.flapping]
    priorities += [f"- Job **{_text(f.job_id)}** failed {_times(f.failures)} today"
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
                                          f"{_stamp(e.since, status.zone)}: "
                                          f"{_text(e.reason)}"
                                          for e in status.open_escalations), ""]
    out.append("**In maintenance**: "
               + (", ".join(_where(c, h) for h, c in status.maintenance) or "none"))
    if len(status.hosts) > 1:
        states = ", ".join(f"{sum(1 for h in status.hosts if h.daemon == state)} {state}"
                           for state in HOST_STATES
                           if any(h.daemon == state for h in status.hosts))
        out += ["", f"**Fleet**: {len(status.hosts)} hosts ({states})"]
        out += [f"- {_host_line(h)}" for h in status.hosts]
    elif status.hosts:
        out += ["", f"**Host**: {_host_line(status.hosts[0])}"]
    return "\n".join(out) + "\n"


def _host_line(h: HostHealth) -> str:
    seen = [f"heartbeat {h.heartbeat_age_s:g}s ago"] if h.heartbeat_age_s is not None else []
    seen += [_text(h.version, 40)] if h.version else []
    return (f"{_text(h.host, 80)}: daemon {h.daemon}"
            + (f" ({', '.join(seen)})" if seen else "")
            + f", {h.supervised} supervised, {h.unhealthy} unhealthy now, "
            f"{h.troubled_containers} unwell since yesterday, {h.open_escalations} escalated")


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
