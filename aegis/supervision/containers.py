"""The containers as operators see them: ``aegis containers``, ``aegis ack`` (which edits
the incident's living message) and ``aegis maintenance``. The database only, never the
Docker engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aegis.core.clock import zone
from aegis.core.config import Settings
from aegis.core.errors import UsageError
from aegis.core.jsonable import to_json
from aegis.storage.events import EventType, Importance, make_event
from aegis.storage.outbox import IncidentStep
from aegis.storage.runtime import Runtime
from aegis.storage.store import insert_event
from aegis.supervision.incidents import Incident, step_message
from aegis.supervision.protocol.strikes import BUDGET_WINDOW, Phase, ShownState, shown_state
from aegis.supervision.protocol.triage import TriageClass
from aegis.supervision.protocol.windows import (
    Window,
    configured_windows,
    label_window,
    upcoming,
    windows_of,
)
from aegis.supervision.repository import ContainerRow, Containers, LogLine
from aegis.supervision.storms import MemberStep, route


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
    # the maintenance window under way, else the next one: its name, start and end
    window: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self)


@dataclass(frozen=True)
class HostWindows:
    """The maintenance windows the operators' view shows: this host's configured ones
    and each container's label. A row of another host shows its label's window only (the
    tables of that host's configuration are not known here)."""

    host: str
    configured: tuple[Window, ...]
    zone: ZoneInfo

    @classmethod
    def of(cls, settings: Settings) -> HostWindows:
        return cls(settings.host, configured_windows(settings.maintenance_tables,
                                                     settings.config_file),
                   zone(settings.timezone))

    def of_row(self, row: ContainerRow) -> list[Window]:
        labelled, _ = label_window(row.labels)
        return windows_of(row, labelled, self.configured if row.host == self.host else (),
                          self.zone)


def view(row: ContainerRow, now: datetime, windows: HostWindows | None = None
         ) -> ContainerView:
    """``row`` as operators see it at ``now``; with ``windows``, its maintenance window
    under way (shown as maintenance) or next."""
    restarts = [t for t in row.restarts if now - t < BUDGET_WINDOW]
    found = upcoming(windows.of_row(row), now) if windows is not None else None
    in_window = found is not None and found[1].start <= now
    return ContainerView(
        name=row.name, id=row.container_id[:12], image=row.image, health=row.health,
        strikes=row.strikes,
        state=shown_state(row.phase, supervision=row.supervision,
                          maintenance=row.in_maintenance(now) or in_window),
        last_action=row.last_action, last_action_at=row.last_action_at,
        restarts_last_hour=len(restarts), host=row.host,
        maintenance_until=row.maintenance_until, reason=row.last_reason,
        triage_class=row.incident_class if row.incident else None,
        folded_into=row.folded_into, affected=row.affected,
        window=found[0].name if found else None,
        window_start=found[1].start if found else None,
        window_end=found[1].end if found else None)


def listing(runtime: Runtime, now: datetime, *, all_hosts: bool = False) -> list[ContainerView]:
    rows = Containers(runtime.db).listing(None if all_hosts else runtime.settings.host)
    windows = HostWindows.of(runtime.settings)
    return [view(row, now, windows) for row in rows]


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
        line = LogLine(now, IncidentStep.ACKNOWLEDGED, f"by {by}")
        incident = Incident.of_row(row)
        had_message = incident.has_message
        incident, notify = step_message(runtime.settings, incident.with_line(line),
                                        dedup_key=f"ack:{host}:{name}:{row.incident}")
        containers.acknowledge(host, name, now, f"acknowledged by {by}", incident.log)
        # the storms of the container's host, whichever host's page acknowledged it
        of_host = replace(runtime.settings, host=host)
        routed = route(tx, of_host, MemberStep(name, row.incident, line, own_message=had_message))
        if not routed.keep_own:
            notify = None  # its storm's message says it
        event = make_event(
            EventType.CONTAINER_ACKNOWLEDGED,
            f"{name}: escalation acknowledged; remediation re-armed",
            importance=Importance.MEDIUM, host=host, source="cli" if by == "cli" else "web",
            timestamp=now,
            details={"container": name, "host": host, "incident": row.incident, "by": by})
        insert_event(tx, event, notify)
    for recorded in (event, *routed.events):
        store.log_event(recorded)
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
