"""What supervision records: the event of each decision and step of an incident, the line
it adds to the incident's log, and the message it calls for (aegis/supervision/
incidents.py says which and what), written together with the container's row.

A decision's records go into the supervisor's transaction (or the spool, as one record,
while PostgreSQL is down). A step taken outside a decision (a restart made or failed, an
acknowledgement, a dependant folded in) locks the row, adds its line and queues the
message's next version in one transaction, so the outbox holds an incident's messages in
the order of its steps.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from aegis.core.config import Settings
from aegis.storage.db import Queries
from aegis.storage.events import Event, EventType, Importance
from aegis.storage.outbox import IncidentStep, Notification, enqueue
from aegis.storage.store import Store
from aegis.supervision.docker import Sighting
from aegis.supervision.incidents import Incident, step_message
from aegis.supervision.protocol import triage
from aegis.supervision.protocol.labels import effective_stop_timeout_s
from aegis.supervision.protocol.strikes import Action, Decision, Phase, SupervisionMode
from aegis.supervision.protocol.triage import TriageClass
from aegis.supervision.repository import ContainerRow, Containers, ContainerUpdate, LogLine
from aegis.supervision.storms import MemberStep, Routed, StormWatch, route

Record = tuple[Event, Notification | None]  # an event to record, and its message
SOURCE = "supervisor"


def details(host: str, seen: Sighting, decision: Decision, **extra: Any) -> dict[str, Any]:
    """The details every supervision event carries, plus ``extra``."""
    return {"container": seen.name, "host": host, "container_id": seen.id[:12],
            "image": seen.image, "compose_project": seen.compose_project,
            "compose_service": seen.compose_service, "incident": decision.state.incident,
            "strikes": decision.state.strikes, "reason": decision.reason,
            "class": decision.state.incident_class, **extra}


class Recorder:
    """Makes the records of one host's supervision."""

    def __init__(self, store: Store, settings: Settings,
                 storms: StormWatch | None = None) -> None:
        """``storms``: what the supervision remembers of storms (None: ask the database
        at every step)."""
        self.store = store
        self.settings = settings
        self.host = settings.host
        self.storms = storms

    def routes_alone(self, step: MemberStep) -> bool:
        """Whether ``step`` needs no storm (counted, then: see ``StormWatch.quiet``), so
        that its decision may be saved with no routing."""
        if self.storms is None:  # nothing remembered: every step is routed
            return not self.settings.storm_threshold
        return self.storms.quiet(self.settings, step)

    def route(self, tx: Queries, step: MemberStep) -> Routed:
        """Route a step of an incident to its host's storm (aegis/supervision/storms.py),
        in ``tx``; the storm's events are logged."""
        routed = route(tx, self.settings, step, self.storms)
        for event in routed.events:
            self.store.log_event(event)
        return routed

    # --- a decision's ---

    def decided(self, decision: Decision, seen: Sighting, incident: Incident, now: datetime,
                *, phase_before: Phase) -> tuple[Record, Incident]:
        """The event and message of ``decision`` (not a restart: aegis/supervision/
        restarter.py records that once it is made), and the incident with its line. For an
        escalation, ``seen`` should come from an inspect, and ``incident`` carry the
        container's last log lines read just now and the memory figures of an OOM kill."""
        if decision.action == Action.ESCALATE:
            return self._escalation(decision, seen, incident, now)
        carried = details(self.host, seen, decision)
        name, reason = seen.name, decision.reason
        if decision.action == Action.STRIKE1:
            folded = decision.state.folded_into
            event = self._event(EventType.CONTAINER_UNHEALTHY,
                                f"{name} is unhealthy (strike 1 of 3)"
                                + (f"; {folded}'s incident covers it" if folded else ""),
                                Importance.MEDIUM, now,
                                {**carried, "status": seen.status, "folded_into": folded})
            return (event, None), incident.with_line(LogLine(now, IncidentStep.STRUCK, reason))
        if decision.action == Action.FOLD:
            event = self._event(EventType.CONTAINER_FOLDED,
                                f"{name}: {reason}; not alerted separately", Importance.MEDIUM,
                                now, {**carried, "folded_into": decision.state.folded_into})
            return (event, None), incident.with_line(LogLine(now, IncidentStep.FOLDED, reason))
        if decision.action == Action.RECOVER:
            incident, notify = step_message(
                self.settings, incident.with_line(LogLine(now, IncidentStep.RECOVERED, reason)),
                dedup_key=f"recovery:{self.host}:{name}:{decision.state.incident}")
            event = self._event(EventType.CONTAINER_RECOVERED, f"{name} recovered: {reason}",
                                Importance.MEDIUM, now,
                                {**carried, "was_escalated": phase_before == Phase.ESCALATED})
            return (event, notify), incident
        incident, notify = step_message(
            self.settings, incident.with_line(LogLine(now, IncidentStep.RESET, reason)),
            dedup_key=f"reset:{self.host}:{name}:{decision.state.incident}")
        event = self._event(EventType.CONTAINER_STRIKES_RESET,
                            f"{name}: strikes reset ({reason})", Importance.LOW, now, carried)
        return (event, notify), incident

    def _escalation(self, decision: Decision, seen: Sighting, incident: Incident,
                    now: datetime) -> tuple[Record, Incident]:
        memory, log_tail = incident.memory, incident.log_tail
        carried = details(self.host, seen, decision, probe_output=seen.probe_output,
                          probe_exit_code=seen.probe_exit_code, exit_code=seen.exit_code,
                          status=seen.status, restarts_last_hour=len(decision.state.restarts),
                          docker_restart_count=seen.docker_restart_count,
                          restart_policy=seen.restart_policy,
                          stop_timeout_s=effective_stop_timeout_s(seen, self.settings))
        if seen.details.get("error"):
            carried["docker_error"] = seen.details["error"]
        if log_tail is not None:
            carried.update(log_tail.details())
        if decision.state.incident_class == TriageClass.OOM:
            memory = {"limit": seen.memory_limit, **memory} if seen.memory_limit else memory
            carried.update({f"memory_{key}_bytes": value for key, value in memory.items()})
        if decision.state.incident_class == TriageClass.CRASH_LOOP:
            carried["exit_codes"] = triage.exit_codes(decision.state.docker_restarts)
        line = LogLine(now, IncidentStep.ESCALATED, decision.reason, probe=seen.probe_output,
                       memory=memory, log_tail=log_tail)
        incident = replace(incident, triage_class=decision.state.incident_class,
                           probe_output=seen.probe_output, memory=memory).with_line(line)
        incident, notify = step_message(
            self.settings, incident,
            dedup_key=f"escalation:{self.host}:{seen.name}:{decision.state.incident}")
        event = self._event(EventType.CONTAINER_ESCALATED,
                            f"{seen.name} escalated (strike 3 of 3): {decision.reason}",
                            Importance.CRITICAL, now, carried)
        return (event, notify), incident

    def notes(self, seen: Sighting, row: ContainerRow, problems: tuple[str, ...],
              mode: SupervisionMode, now: datetime) -> list[Record]:
        """Events said once per container: a bad label, a Swarm task left to Swarm."""
        records: list[Record] = [(self._event(
            EventType.CONTAINER_BAD_LABEL, f"{seen.name}: label {problem}; treated as unset",
            Importance.MEDIUM, now, {"container": seen.name, "host": self.host,
                                     "problem": problem}), None)
            for problem in problems if problem not in row.label_problems]
        if mode == SupervisionMode.ORCHESTRATED and row.supervision != mode:
            records.append((self._event(
                EventType.CONTAINER_ORCHESTRATED,
                f"{seen.name} is a task of the Swarm service {seen.swarm_service}: aegis "
                "observes it and never restarts it (Swarm replaces unhealthy tasks)",
                Importance.LOW, now, {"container": seen.name, "host": self.host,
                                      "swarm_service": seen.swarm_service}), None))
        return records

    def _event(self, event_type: EventType, summary: str, importance: Importance,
               now: datetime, carried: dict[str, Any]) -> Event:
        return self.store.new_event(event_type, summary, importance=importance, source=SOURCE,
                                    timestamp=now, details=carried)

    # --- steps outside a decision ---

    def fold_into(self, tx: Queries, parent: str, dependant: ContainerUpdate,
                  event_uid: str | None) -> None:
        """Name a dependant as affected in its parent's open incident, and edit the
        parent's living message to say so when it has one; in the dependant's
        transaction, so the parent's lines and edits stay in order."""
        containers = Containers(tx)
        row = containers.lock(self.host, parent)
        if row is None or row.phase == Phase.OK or dependant.name in row.affected:
            return
        incident = replace(Incident.of_row(row), affected=(*row.affected, dependant.name))
        had_message = incident.has_message
        line = LogLine(dependant.seen_at, IncidentStep.AFFECTED, dependant.name)
        incident, notify = step_message(
            self.settings, incident.with_line(line),
            dedup_key=f"affected:{self.host}:{parent}:{row.incident}:{dependant.name}")
        containers.set_log(self.host, parent, row.incident, incident.log, incident.affected)
        if not self.route(tx, MemberStep(parent, row.incident, line,
                                         own_message=had_message)).keep_own:
            notify = None
        if notify is not None:
            enqueue(tx, notify, host=self.host, event_uid=event_uid)

    def step_message(self, tx: Queries, seen: Sighting, incident: int,
                     line: LogLine) -> Notification | None:
        """Add ``line`` (a step taken outside a decision) to the open incident of
        ``seen``'s row, locked in ``tx``: the message it calls for (an edit of the living
        message), or None (none called for, or the row moved on to another incident)."""
        containers = Containers(tx)
        row = containers.lock(self.host, seen.name)
        if row is None or row.incident != incident:
            return None
        count = sum(1 for kept in row.incident_log if kept.step == line.step)
        found = Incident.of_row(row, probe_output=seen.probe_output)
        had_message = found.has_message
        found, notify = step_message(
            self.settings, found.with_line(line),
            dedup_key=f"{line.step}:{self.host}:{seen.name}:{incident}:{count + 1}")
        containers.set_log(self.host, seen.name, incident, found.log, found.affected)
        routed = self.route(tx, MemberStep(seen.name, incident, line, own_message=had_message))
        return notify if routed.keep_own else None
