"""The containers as operators see them: ``aegis containers``, ``aegis ack`` (which edits
the incident's living message) and ``aegis maintenance``. The database only, never the
Docker engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aegis.core.errors import UsageError
from aegis.core.jsonable import to_json
from aegis.storage.events import EventType, Importance, make_event
from aegis.storage.outbox import IncidentStep
from aegis.storage.runtime import Runtime
from aegis.storage.store import insert_event
from aegis.supervision.incidents import Incident, step_message
from aegis.supervision.protocol.strikes import BUDGET_WINDOW, Phase, ShownState, shown_state
from aegis.supervision.protocol.triage import TriageClass
from aegis.supervision.repository import ContainerRow, Containers, LogLine


@dataclass(frozen=True)
class ContainerView:
    name: str
    id: str
    image: str
    health: str
    strikes: int
    state: ShownState
    last_action: str | None
    last_action_at: datetime | None
    restarts_last_hour: int
    host: str
    maintenance_until: datetime | None
    reason: str | None
    triage_class: TriageClass | None  # the class of the open (or latest) incident
    folded_into: str | None  # the parent whose incident this container waits for
    affected: tuple[str, ...]  # the dependants folded into this container's incident

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


def view(row: ContainerRow, now: datetime) -> ContainerView:
    restarts = [t for t in row.restarts if now - t < BUDGET_WINDOW]
    return ContainerView(
        name=row.name, id=row.container_id[:12], image=row.image, health=row.health,
        strikes=row.strikes,
        state=shown_state(row.phase, supervision=row.supervision,
                          maintenance=row.in_maintenance(now)),
        last_action=row.last_action, last_action_at=row.last_action_at,
        restarts_last_hour=len(restarts), host=row.host,
        maintenance_until=row.maintenance_until, reason=row.last_reason,
        triage_class=row.incident_class if row.incident else None,
        folded_into=row.folded_into, affected=row.affected)


def listing(runtime: Runtime, now: datetime, *, all_hosts: bool = False) -> list[ContainerView]:
    rows = Containers(runtime.db).listing(None if all_hosts else runtime.settings.host)
    return [view(row, now) for row in rows]


def _unknown(runtime: Runtime, name: str, host: str | None = None) -> UsageError:
    return UsageError(f"no container {name!r} on host {host or runtime.settings.host!r} "
                      "(see aegis containers)")


def acknowledge(runtime: Runtime, name: str, now: datetime, *, by: str = "cli",
                host: str | None = None) -> bool:
    """A person takes over ``name`` of ``host`` (default: this host): strikes reset,
    remediation re-armed (the hourly restart budget is kept), the incident's living
    message says so, and no escalation page of it is due any more. Returns False when
    the container was not escalated (nothing recorded)."""
    host = host or runtime.settings.host
    store = runtime.store
    with runtime.db.transaction() as tx:
        containers = Containers(tx)
        row = containers.lock(host, name)
        if row is None:
            raise _unknown(runtime, name, host)
        if row.phase != Phase.ESCALATED:
            return False
        incident = Incident.of_row(row).with_line(
            LogLine(now, IncidentStep.ACKNOWLEDGED, f"by {by}"))
        incident, notify = step_message(runtime.settings, incident,
                                        dedup_key=f"ack:{host}:{name}:{row.incident}")
        containers.acknowledge(host, name, now, f"acknowledged by {by}", incident.log)
        # the container's host, whichever host's page or command acknowledged it
        event = make_event(
            EventType.CONTAINER_ACKNOWLEDGED,
            f"{name}: escalation acknowledged; remediation re-armed",
            importance=Importance.MEDIUM, host=host, source="cli" if by == "cli" else "web",
            timestamp=now,
            details={"container": name, "host": host, "incident": row.incident, "by": by})
        insert_event(tx, event, notify)
    store.log_event(event)
    return True


def set_maintenance(runtime: Runtime, name: str, now: datetime,
                    duration_s: float | None) -> ContainerRow:
    """Pause action on ``name`` for ``duration_s`` seconds, or resume it (None). A name
    this host has no row for is refused, as by ``acknowledge``: a typo must not look
    like a container put safely into maintenance."""
    if duration_s is not None and duration_s <= 0:
        raise UsageError("--for must be a positive duration (30m, 1h, 2d)")
    until = None if duration_s is None else now + timedelta(seconds=duration_s)
    host = runtime.settings.host
    row = Containers(runtime.db).set_maintenance(host, name, until, now)
    if row is None:
        raise _unknown(runtime, name)
    if until is None:
        runtime.store.record_event(EventType.CONTAINER_MAINTENANCE_ENDED,
                                   f"{name}: maintenance ended, remediation resumed",
                                   importance=Importance.LOW, source="cli",
                                   details={"container": name, "host": host})
    else:
        runtime.store.record_event(EventType.CONTAINER_MAINTENANCE,
                                   f"{name}: maintenance until {until:%Y-%m-%d %H:%M:%S} UTC",
                                   importance=Importance.LOW, source="cli",
                                   details={"container": name, "host": host,
                                            "until": until.isoformat()})
    return row
