"""An incident and what its message says.

An incident is a container's trouble from its first strike (or its escalation, when
Docker gave up on it) up to its recovery or acknowledgement. Each step is an event
(aegis/supervision/records.py records them) and a line of the incident's log (the
``incident_log`` of its ``containers`` row); the message a step calls for depends on
AEGIS_ALERT_STYLE:

- ``thread`` (the default): one living message per incident, created when the incident
  first warrants one (its escalation; its first restart with AEGIS_ALERT_FROM=restart)
  and edited by every later step (restarted, escalated, acknowledged, recovered, a
  dependant folded into it). Each outbox row carries the whole message; rows of one
  incident share its thread. Destinations that cannot edit (Apprise) get the escalation
  and the recovery of an escalated incident only.
- ``posts``: a post per escalation and per recovery of an escalated container (and per
  restart with AEGIS_ALERT_FROM=restart).

Every message carries the host, the compose project and service, the image, the class,
the last probe output, the container's last log lines (read before its restart and at its
escalation) and, while the incident is open, the ``aegis ack`` line. The log lines give
way first when the message would grow past what Discord shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from aegis.core.config import AlertFrom, AlertStyle, Settings
from aegis.notify.discord import utf16_len
from aegis.notify.messages import escape_markdown
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification
from aegis.supervision.docker import LogTail
from aegis.supervision.protocol.triage import MEANING, TriageClass
from aegis.supervision.repository import ContainerRow, ContainerUpdate, LogLine

# The steps that say where an incident stands, with its message's verb and importance.
STATES = {
    IncidentStep.STRUCK: ("is unhealthy", Importance.MEDIUM),
    IncidentStep.RESTARTED: ("restarted", Importance.HIGH),
    IncidentStep.RESTART_FAILED: ("restart failed", Importance.HIGH),
    IncidentStep.RECREATED: ("recreated", Importance.HIGH),
    IncidentStep.STACK_RESTARTED: ("restarted with its stack", Importance.HIGH),
    IncidentStep.ESCALATED: ("escalated", Importance.CRITICAL),
    IncidentStep.ACKNOWLEDGED: ("acknowledged", Importance.MEDIUM),
    IncidentStep.RECOVERED: ("recovered", Importance.MEDIUM),
    IncidentStep.RESET: ("no longer supervised", Importance.MEDIUM),
}
CLOSING = (IncidentStep.ACKNOWLEDGED, IncidentStep.RECOVERED, IncidentStep.RESET)
MiB = 1024 * 1024
# Discord shows 4096 characters of a description, and 6000 in all with the title, fields
# and footer: a body kept to this fits beside them. The log lines give way first (the
# oldest first), so the headline, the steps and the ack line are never cut for them.
BODY_MAX_CHARS = 3500
LOG_TAIL_HEADING = "Last log lines:"


@dataclass(frozen=True)
class Incident:
    """One container's incident, as its message shows it."""

    host: str
    name: str
    number: int
    image: str = ""
    compose_project: str | None = None
    compose_service: str | None = None
    triage_class: TriageClass | None = None
    log: tuple[LogLine, ...] = ()
    affected: tuple[str, ...] = ()
    probe_output: str = ""
    memory: dict[str, int] = field(default_factory=dict)
    log_tail: LogTail | None = None  # the container's last log lines, as last read

    @classmethod
    def of_row(cls, row: ContainerRow | ContainerUpdate,
               probe_output: str | None = None) -> Incident:
        """The incident open in a container's row (or in what a decision writes into it),
        with the probe output, memory figures and log lines its log's latest lines read
        (or, given, the probe output read just now)."""
        log = row.incident_log
        if probe_output is None:
            probe_output = next((line.probe for line in reversed(log) if line.probe), "")
        return cls(host=row.host, name=row.name, number=row.incident, image=row.image or "",
                   compose_project=row.compose_project, compose_service=row.compose_service,
                   triage_class=row.incident_class, log=log, affected=row.affected,
                   probe_output=probe_output,
                   memory=next((line.memory for line in reversed(log) if line.memory), {}),
                   log_tail=next((line.log_tail for line in reversed(log)
                                  if line.log_tail is not None), None))

    @property
    def thread(self) -> str:
        return f"incident:{self.host}:{self.name}:{self.number}"

    @property
    def state(self) -> IncidentStep:
        """The latest step that says where the incident stands."""
        return next((line.step for line in reversed(self.log) if line.step in STATES),
                    IncidentStep.STRUCK)

    @property
    def has_message(self) -> bool:
        """Whether its message exists (a step of it went out)."""
        return any(line.alerted for line in self.log)

    @property
    def escalated(self) -> bool:
        return any(line.step == IncidentStep.ESCALATED for line in self.log)

    @property
    def restarts(self) -> int:
        return sum(1 for line in self.log if line.step == IncidentStep.RESTARTED)

    def with_line(self, line: LogLine) -> Incident:
        """The incident with ``line`` added (and the log lines it read, if it read any)."""
        tail = self.log_tail if line.log_tail is None else line.log_tail
        return replace(self, log=(*self.log, line), log_tail=tail)


# --- the message a step calls for ---


def step_calls_for_message(settings: Settings, incident: Incident) -> bool:
    """Whether the incident's latest step calls for a message (a post, or an edit of its
    living message)."""
    latest = incident.log[-1].step if incident.log else None
    alerting = {IncidentStep.ESCALATED}
    if settings.alert_from == AlertFrom.RESTART:
        alerting |= {IncidentStep.RESTARTED, IncidentStep.RECREATED,
                     IncidentStep.STACK_RESTARTED}
    if settings.alert_style == AlertStyle.POSTS:
        return latest in alerting or (latest == IncidentStep.RECOVERED and incident.escalated)
    had_message = replace(incident, log=incident.log[:-1]).has_message
    return latest in alerting or (had_message and latest in (*STATES, IncidentStep.AFFECTED))


def step_message(settings: Settings, incident: Incident, *, dedup_key: str
                 ) -> tuple[Incident, Notification | None]:
    """The incident with its latest step marked as gone out, and the message of that
    step; the incident unchanged and None when the step calls for none."""
    if not incident.log or not step_calls_for_message(settings, incident):
        return incident, None
    latest = replace(incident.log[-1], alerted=True)
    incident = replace(incident, log=(*incident.log[:-1], latest))
    verb, importance = STATES[incident.state]
    title = f"{incident.name} {verb} on {incident.host}"
    body = message_body(incident)
    fields = message_fields(incident)
    if settings.alert_style == AlertStyle.POSTS:
        return incident, Notification(channel=Channel.ALERTS, title=title, body=body,
                                      importance=importance, fields=fields,
                                      dedup_key=dedup_key, state=incident.state)
    # Apprise (no edits) hears of the escalation and of an escalated incident's end only
    announced = latest.step == IncidentStep.ESCALATED or (
        latest.step == IncidentStep.RECOVERED and incident.escalated)
    return incident, Notification(channel=Channel.ALERTS, title=title, body=body,
                                  importance=importance, fields=fields, dedup_key=dedup_key,
                                  groupable=False, thread=incident.thread,
                                  state=incident.state, edit_only=not announced)


def message_fields(incident: Incident) -> dict[str, str]:
    fields = {"host": incident.host, "container": incident.name}
    if incident.compose_project or incident.compose_service:
        fields["compose"] = f"{incident.compose_project or '-'}/{incident.compose_service or '-'}"
    fields["image"] = incident.image or "-"
    if incident.triage_class:
        fields["class"] = incident.triage_class.value
    fields["restarts"] = str(incident.restarts)
    return fields


def message_body(incident: Incident) -> str:
    """The message's description: where the incident stands, why, the container's last log
    lines, its steps, who else it affects, and how to take it over; at most
    BODY_MAX_CHARS (as Discord counts them) unless the rest alone is longer. aegis's own
    markdown; outside text escaped."""
    head = [_headline(incident)]
    if incident.triage_class and incident.triage_class != TriageClass.UNHEALTHY:
        head.append(f"Class: {MEANING[incident.triage_class]}")
    if incident.probe_output:
        # outside text, shown as written: a probe's `**` or <@123> formats and pings nothing
        head.append(f"Last health probe: {escape_markdown(incident.probe_output)}")
    if incident.memory or incident.triage_class == TriageClass.OOM:
        head.append(_memory(incident))
    rest = _steps(incident)
    room = BODY_MAX_CHARS - utf16_len("\n".join([*head, *rest]))
    return "\n".join([*head, *_log_tail(incident.log_tail, room), *rest])


def _steps(incident: Incident) -> list[str]:
    """The incident's steps, who else it affects and how to take it over, after a blank
    line."""
    lines = [""]
    lines.extend(f"{line.at:%H:%M:%S} {line.step.replace('_', ' ')}"
                 + (f": {escape_markdown(line.text)}" if line.text else "")
                 for line in incident.log if line.step != IncidentStep.AFFECTED)
    if incident.affected:
        lines += ["", "Also affected: " + ", ".join(escape_markdown(n) for n in incident.affected)
                  + " (waiting for this container; not alerted separately)"]
    if incident.state == IncidentStep.ESCALATED:
        lines += ["", f"aegis takes no further action until `aegis ack {incident.name}` or "
                      "the container is healthy again."]
    elif incident.state not in CLOSING:
        lines += ["", f"Take it over: `aegis ack {incident.name}`"]
    return lines


def _log_tail(tail: LogTail | None, room: int) -> list[str]:
    """The lines that show the container's last log lines (each escaped: outside text) in
    at most ``room`` characters, a newline before each: the newest lines that fit, after
    a note of how many older ones were left out; nothing when not even that fits."""
    if tail is None:
        return []
    if tail.unavailable or not tail.lines:
        found = [f"{LOG_TAIL_HEADING} {escape_markdown(tail.unavailable or 'none written')}"]
        return found if _size(found) <= room else []
    shown = [escape_markdown(text) for text in tail.lines]
    budget = room - _size([LOG_TAIL_HEADING, _left_out(len(shown))])
    kept: list[str] = []
    for text in reversed(shown):
        if _size([*kept, text]) > budget:
            break
        kept.insert(0, text)
    if len(kept) < len(shown):
        kept.insert(0, _left_out(len(shown) - len(kept)))
    found = [LOG_TAIL_HEADING, *kept]
    return found if _size(found) <= room else []


def _left_out(count: int) -> str:
    return (f"({count} older line{'' if count == 1 else 's'} left out to fit the message; "
            "the event's details keep them)")


def _size(lines: list[str]) -> int:
    """What ``lines`` add to a message, each after a newline, as Discord counts."""
    return sum(utf16_len(line) + 1 for line in lines)


def _headline(incident: Incident) -> str:
    log, state = incident.log, incident.state
    if state in (IncidentStep.RECOVERED, IncidentStep.ACKNOWLEDGED) and log:
        minutes = (log[-1].at - log[0].at).total_seconds() / 60
        how = "resolved" if state == IncidentStep.RECOVERED else "acknowledged"
        restarts = incident.restarts
        return (f"**{how.capitalize()}** after {minutes:.0f} min, {restarts} restart"
                f"{'' if restarts == 1 else 's'}.")
    last = next((line for line in reversed(log) if line.step == state), None)
    reason = f": {escape_markdown(last.text)}" if last and last.text else ""
    return f"**{STATES[state][0].capitalize()}**{reason}."


def _memory(incident: Incident) -> str:
    parts = [f"{label} {incident.memory[key] / MiB:.0f} MiB"
             for key, label in (("limit", "limit"), ("max_usage", "peak"), ("usage", "now"))
             if incident.memory.get(key)]
    return "Memory: " + (", ".join(parts) if parts else "no limit or usage reported")
