"""What an incident records and tells.

An incident is a container's trouble from its first strike (or its escalation, when
Docker gave up on it) up to its recovery or acknowledgement. Each step is an event and a
line of the incident's log (the ``incident_log`` of its ``containers`` row); the alert a
step calls for depends on AEGIS_ALERT_STYLE:

- ``thread`` (the default): one living message per incident, created when the incident
  first warrants an alert (its escalation; its first restart with
  AEGIS_ALERT_FROM=restart) and edited by every later step (restarted, escalated,
  acknowledged, recovered, a dependant folded into it). Each outbox row carries the whole
  message; rows of one incident share its thread. Destinations that cannot edit
  (Apprise) get the escalation and the recovery of an escalated incident only.
- ``posts``: a post per escalation and per recovery of an escalated container (and per
  restart with AEGIS_ALERT_FROM=restart).

Every message carries the host, the compose project and service, the image, the class,
the last probe output and, while the incident is open, the ``aegis ack`` line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aegis.core.config import AlertFrom, AlertStyle, Settings
from aegis.notify.messages import escape_markdown
from aegis.storage.db import Queries, Row
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.outbox import Channel, IncidentStep, Notification, enqueue
from aegis.storage.store import Store
from aegis.supervision import triage
from aegis.supervision.docker import Seen
from aegis.supervision.labels import effective_stop_timeout_s
from aegis.supervision.repository import Containers
from aegis.supervision.strikes import Decision, SupervisionMode
from aegis.supervision.triage import MEANING, TriageClass

Record = tuple[Event, Notification | None]  # an event to record, and its alert
Step = dict[str, Any]  # one line of an incident's log: at, step, text, alerted (probe, memory)

# The steps that say where an incident stands, with its message's verb and importance.
STATES = {
    IncidentStep.STRUCK: ("is unhealthy", Importance.MEDIUM),
    IncidentStep.RESTARTED: ("restarted", Importance.HIGH),
    IncidentStep.RESTART_FAILED: ("restart failed", Importance.HIGH),
    IncidentStep.ESCALATED: ("escalated", Importance.CRITICAL),
    IncidentStep.ACKNOWLEDGED: ("acknowledged", Importance.MEDIUM),
    IncidentStep.RECOVERED: ("recovered", Importance.MEDIUM),
    IncidentStep.RESET: ("no longer supervised", Importance.MEDIUM),
}
CLOSING = (IncidentStep.ACKNOWLEDGED, IncidentStep.RECOVERED, IncidentStep.RESET)
MiB = 1024 * 1024


@dataclass(frozen=True)
class Incident:
    """One container's incident, as its message shows it."""

    host: str
    name: str
    number: int
    image: str = ""
    compose_project: str | None = None
    compose_service: str | None = None
    klass: str | None = None
    log: tuple[Step, ...] = ()
    affected: tuple[str, ...] = ()
    probe_output: str = ""
    memory: dict[str, int] = field(default_factory=dict)

    @property
    def thread(self) -> str:
        return f"incident:{self.host}:{self.name}:{self.number}"

    @property
    def state(self) -> IncidentStep:
        """The latest step that says where the incident stands."""
        return next((IncidentStep(s["step"]) for s in reversed(self.log) if s["step"] in STATES),
                    IncidentStep.STRUCK)

    @property
    def started(self) -> bool:
        """Whether its message exists (a step of it was alerted)."""
        return any(s.get("alerted") for s in self.log)

    @property
    def escalated(self) -> bool:
        return any(s["step"] == IncidentStep.ESCALATED for s in self.log)


def details(host: str, seen: Seen, decision: Decision, **extra: Any) -> dict[str, Any]:
    """The details every supervision event carries, plus ``extra``."""
    return {"container": seen.name, "host": host, "container_id": seen.id[:12],
            "image": seen.image, "compose_project": seen.compose_project,
            "compose_service": seen.compose_service, "incident": decision.state.incident,
            "strikes": decision.state.strikes, "reason": decision.reason,
            "class": decision.state.incident_class, **extra}


def step(name: IncidentStep, at: datetime, text: str = "", *, probe: str = "",
         memory: dict[str, int] | None = None) -> Step:
    """One step of an incident's log; a step that read the probe output (or, for an OOM
    kill, the memory figures) keeps them, so every later edit of the message shows them."""
    found: Step = {"at": at.isoformat(), "step": name, "text": text}
    if probe:
        found["probe"] = probe
    if memory:
        found["memory"] = memory
    return found


def latest_of(log: tuple[Step, ...], key: str) -> Any:
    """The value of ``key`` in the latest step of ``log`` that has one, or None."""
    return next((s[key] for s in reversed(log) if s.get(key)), None)


def of_row(row: Row, **extra: Any) -> Incident:
    """The incident open in a ``containers`` row (or the parameters of its save)."""
    log = tuple(row["incident_log"] or ())
    kept = {"probe_output": latest_of(log, "probe") or "", "memory": latest_of(log, "memory") or {}}
    return Incident(host=row["host"], name=row["name"], number=row["incident"],
                    image=row["image"] or "", compose_project=row["compose_project"],
                    compose_service=row["compose_service"], klass=row["incident_class"],
                    log=log, affected=tuple(row["affected"] or ()), **{**kept, **extra})


# --- the steps of a decision ---


def record(store: Store, settings: Settings, decision: Decision, phase_before: str,
           seen: Seen, now: datetime, incident: Incident, memory: dict[str, int] | None = None,
           ) -> tuple[Record, Incident]:
    """The event and alert of ``decision`` (not a restart: aegis/supervision/restarts.py
    records that once it is made), and the incident with its step. For an escalation,
    ``seen`` should come from an inspect."""
    host, name = settings.host, seen.name
    carried = details(host, seen, decision)
    if decision.action == "strike1":
        folded = f"; {decision.state.folded_into}'s incident covers it" \
            if decision.state.folded_into else ""
        event = store.new_event(
            EventType.CONTAINER_UNHEALTHY, f"{name} is unhealthy (strike 1 of 3){folded}",
            importance=Importance.MEDIUM, source="supervisor", timestamp=now,
            details={**carried, "status": seen.status,
                     "folded_into": decision.state.folded_into})
        return (event, None), add(incident, step(IncidentStep.STRUCK, now, decision.reason))
    if decision.action == "fold":
        event = store.new_event(
            EventType.CONTAINER_FOLDED, f"{name}: {decision.reason}; not alerted separately",
            importance=Importance.MEDIUM, source="supervisor", timestamp=now,
            details={**carried, "folded_into": decision.state.folded_into})
        return (event, None), add(incident, step(IncidentStep.FOLDED, now, decision.reason))
    if decision.action == "escalate":
        return _escalation(store, settings, decision, seen, now, incident, memory or {})
    if decision.action == "recover":
        was_escalated = phase_before == "escalated"
        incident = add(incident, step(IncidentStep.RECOVERED, now, decision.reason))
        incident, notify = alert(settings, incident, dedup_key=f"recovery:{host}:{name}:"
                                 f"{decision.state.incident}")
        event = store.new_event(
            EventType.CONTAINER_RECOVERED, f"{name} recovered: {decision.reason}",
            importance=Importance.MEDIUM, source="supervisor", timestamp=now,
            details={**carried, "was_escalated": was_escalated})
        return (event, notify), incident
    incident = add(incident, step(IncidentStep.RESET, now, decision.reason))
    incident, notify = alert(settings, incident, dedup_key=f"reset:{host}:{name}:"
                             f"{decision.state.incident}")
    event = store.new_event(
        EventType.CONTAINER_STRIKES_RESET, f"{name}: strikes reset ({decision.reason})",
        importance=Importance.LOW, source="supervisor", timestamp=now, details=carried)
    return (event, notify), incident


def _escalation(store: Store, settings: Settings, decision: Decision, seen: Seen,
                now: datetime, incident: Incident, memory: dict[str, int]
                ) -> tuple[Record, Incident]:
    name = seen.name
    carried = details(settings.host, seen, decision, probe_output=seen.probe_output,
                      probe_exit_code=seen.probe_exit_code, exit_code=seen.exit_code,
                      status=seen.status, restarts_last_hour=len(decision.state.restarts),
                      docker_restart_count=seen.docker_restart_count,
                      restart_policy=seen.restart_policy,
                      stop_timeout_s=effective_stop_timeout_s(seen, settings))
    if seen.details.get("error"):
        carried["docker_error"] = seen.details["error"]
    if decision.state.incident_class == TriageClass.OOM:
        memory = {"limit": seen.memory_limit, **memory} if seen.memory_limit else memory
        carried.update({f"memory_{key}_bytes": value for key, value in memory.items()})
    if decision.state.incident_class == TriageClass.CRASH_LOOP:
        carried["exit_codes"] = triage.exit_codes(decision.state.docker_restarts)
    incident = add(replace(incident, klass=decision.state.incident_class,
                           probe_output=seen.probe_output, memory=memory),
                   step(IncidentStep.ESCALATED, now, decision.reason, probe=seen.probe_output,
                        memory=memory))
    incident, notify = alert(settings, incident, dedup_key=f"escalation:{settings.host}:{name}:"
                             f"{decision.state.incident}")
    event = store.new_event(
        EventType.CONTAINER_ESCALATED, f"{name} escalated (strike 3 of 3): {decision.reason}",
        importance=Importance.CRITICAL, source="supervisor", timestamp=now, details=carried)
    return (event, notify), incident


def add(incident: Incident, new: Step) -> Incident:
    return replace(incident, log=(*incident.log, new))


def notes(store: Store, host: str, seen: Seen, row: Row, problems: tuple[str, ...],
          mode: SupervisionMode, now: datetime) -> list[Record]:
    """Events said once per container: a bad label, a Swarm task left to Swarm."""
    records: list[Record] = [(store.new_event(
        EventType.CONTAINER_BAD_LABEL, f"{seen.name}: label {problem}; treated as unset",
        importance=Importance.MEDIUM, source="supervisor", timestamp=now,
        details={"container": seen.name, "host": host, "problem": problem}), None)
        for problem in problems if problem not in (row["label_problems"] or [])]
    if mode == SupervisionMode.ORCHESTRATED and row["supervision"] != mode:
        records.append((store.new_event(
            EventType.CONTAINER_ORCHESTRATED, f"{seen.name} is a task of the Swarm service "
            f"{seen.swarm_service}: aegis observes it and never restarts it (Swarm replaces "
            "unhealthy tasks)", importance=Importance.LOW, source="supervisor", timestamp=now,
            details={"container": seen.name, "host": host,
                     "swarm_service": seen.swarm_service}), None))
    return records


def fold_into(tx: Queries, settings: Settings, parent: str, params: dict[str, Any],
              event_uid: str | None) -> None:
    """Name a dependant (the container ``params`` saves) as affected in its parent's open
    incident, and edit the parent's living message to say so when it has one; in the
    dependant's transaction, so the parent's steps and edits stay in order."""
    containers = Containers(tx)
    row = containers.lock(settings.host, parent)
    if row is None or row["phase"] == "ok" or params["name"] in (row["affected"] or []):
        return
    incident = of_row(row)
    incident = add(replace(incident, affected=(*incident.affected, params["name"])),
                   step(IncidentStep.AFFECTED, params["seen_at"], params["name"]))
    incident, notify = alert(settings, incident, dedup_key=f"affected:{settings.host}:{parent}:"
                             f"{row['incident']}:{params['name']}")
    containers.set_log(settings.host, parent, row["incident"], incident.log, incident.affected)
    if notify is not None:
        enqueue(tx, notify, host=settings.host, event_uid=event_uid)


# --- the alert of a step ---


def alerts(settings: Settings, incident: Incident) -> bool:
    """Whether the incident's latest step calls for a message (a post, or an edit of its
    living message)."""
    latest = incident.log[-1]["step"] if incident.log else ""
    alerting = {IncidentStep.ESCALATED} | ({IncidentStep.RESTARTED}
                                           if settings.alert_from == AlertFrom.RESTART
                                           else set())
    if settings.alert_style == AlertStyle.POSTS:
        return latest in alerting or (latest == IncidentStep.RECOVERED and incident.escalated)
    started_before = replace(incident, log=incident.log[:-1]).started
    return latest in alerting or (started_before
                                  and latest in (*STATES, IncidentStep.AFFECTED))


def alert(settings: Settings, incident: Incident, *, dedup_key: str
          ) -> tuple[Incident, Notification | None]:
    """The incident with its latest step marked alerted, and the notification of that
    step; the incident unchanged and None when the step calls for none."""
    if not incident.log or not alerts(settings, incident):
        return incident, None
    latest = {**incident.log[-1], "alerted": True}
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
    announced = latest["step"] == IncidentStep.ESCALATED or (
        latest["step"] == IncidentStep.RECOVERED and incident.escalated)
    return incident, Notification(channel=Channel.ALERTS, title=title, body=body,
                                  importance=importance, fields=fields, dedup_key=dedup_key,
                                  groupable=False, thread=incident.thread,
                                  state=incident.state, edit_only=not announced)


# --- the message ---


def message_fields(incident: Incident) -> dict[str, str]:
    fields = {"host": incident.host, "container": incident.name}
    if incident.compose_project or incident.compose_service:
        fields["compose"] = f"{incident.compose_project or '-'}/{incident.compose_service or '-'}"
    fields["image"] = incident.image or "-"
    if incident.klass:
        fields["class"] = incident.klass
    fields["restarts"] = str(sum(1 for s in incident.log
                                 if s["step"] == IncidentStep.RESTARTED))
    return fields


def message_body(incident: Incident) -> str:
    """The message's description: where the incident stands, why, its steps, who else it
    affects, and how to take it over. aegis's own markdown; outside text escaped."""
    log = incident.log
    lines = [_headline(incident)]
    if incident.klass and incident.klass != TriageClass.UNHEALTHY:
        lines.append(f"Class: {MEANING.get(TriageClass(incident.klass), incident.klass)}")
    if incident.probe_output:
        # outside text, shown as written: a probe's `**` or <@123> formats and pings nothing
        lines.append(f"Last health probe: {escape_markdown(incident.probe_output)}")
    if incident.memory or incident.klass == TriageClass.OOM:
        lines.append(_memory(incident))
    lines.append("")
    lines.extend(f"{_clock(s['at'])} {s['step'].replace('_', ' ')}"
                 + (f": {escape_markdown(s['text'])}" if s.get("text") else "")
                 for s in log if s["step"] != IncidentStep.AFFECTED)
    if incident.affected:
        lines += ["", "Also affected: " + ", ".join(escape_markdown(n) for n in incident.affected)
                  + " (waiting for this container; not alerted separately)"]
    if incident.state not in CLOSING:
        lines += ["", f"aegis takes no further action until `aegis ack {incident.name}` or "
                      "the container is healthy again."
                  if incident.state == IncidentStep.ESCALATED
                  else f"Take it over: `aegis ack {incident.name}`"]
    return "\n".join(lines)


def _headline(incident: Incident) -> str:
    log, state = incident.log, incident.state
    if state in (IncidentStep.RECOVERED, IncidentStep.ACKNOWLEDGED) and log:
        minutes = (datetime.fromisoformat(log[-1]["at"])
                   - datetime.fromisoformat(log[0]["at"])).total_seconds() / 60
        restarts = sum(1 for s in log if s["step"] == IncidentStep.RESTARTED)
        how = "resolved" if state == IncidentStep.RECOVERED else "acknowledged"
        return (f"**{how.capitalize()}** after {minutes:.0f} min, {restarts} restart"
                f"{'' if restarts == 1 else 's'}.")
    last = next((s for s in reversed(log) if s["step"] == state), None)
    reason = f": {escape_markdown(last['text'])}" if last and last.get("text") else ""
    return f"**{STATES[state][0].capitalize()}**{reason}."


def _memory(incident: Incident) -> str:
    parts = [f"{label} {incident.memory[key] / MiB:.0f} MiB"
             for key, label in (("limit", "limit"), ("max_usage", "peak"), ("usage", "now"))
             if incident.memory.get(key)]
    return "Memory: " + (", ".join(parts) if parts else "no limit or usage reported")


def _clock(text: str) -> str:
    return f"{datetime.fromisoformat(text):%H:%M:%S}"
