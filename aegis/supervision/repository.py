"""The owner of the ``containers`` table (aegis/storage/sql/containers.sql): each
supervised container's strike state and open incident, as ``ContainerRow``s, and what a
decision writes back, as a ``ContainerUpdate``.

While the database is unreachable the supervisor decides from the rows it last read or
wrote (``LastKnownRows``), and each decision is spooled with its events; the spool's
replay (``replay_decision``) writes them back, once, when the database returns.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aegis.storage.db import Json, Queries
from aegis.storage.events import Event
from aegis.storage.outbox import IncidentStep, Notification
from aegis.storage.rows import PrunedBatch, as_row, as_rows, column, maybe_row
from aegis.storage.store import event_from_record, event_record, insert_event
from aegis.supervision.docker import LogTail, Sighting
from aegis.supervision.protocol.strikes import (
    BUDGET_WINDOW,
    Action,
    Phase,
    ShownState,
    StrikeState,
    SupervisionMode,
)
from aegis.supervision.protocol.triage import Sample, TriageClass

# The columns a spooled decision carries as ISO-8601 text.
# an event's parameters (Event.params), as ``container_save`` takes them: event_uid...
_EVENT_PARAMS = ("uid", "timestamp", "event_type", "summary", "details", "importance", "host",
                 "source")


def _event_params(event: Event | None) -> dict[str, Any]:
    """``event``'s parameters for ``container_save``, each named ``event_*`` (all NULL
    without one: no event is recorded)."""
    values = event.params() if event is not None else {}
    return {f"event_{key.removeprefix('event_')}": values.get(key) for key in _EVENT_PARAMS}


_TIMES = ("strike_at", "healthy_since", "last_action_at", "next_check_at", "seen_at",
          "oom_restart_at", "stop_requested_at", "climbed_at")


@dataclass(frozen=True)
class LogLine:
    """One line of an incident's log (the ``containers.incident_log`` column): a step,
    when, why; whether its message went out; the probe output (or, for an OOM kill, the
    memory figures) and the container's last log lines (a restart's, an escalation's) it
    read, kept so every later edit of the message still shows them."""

    at: datetime
    step: IncidentStep
    text: str = ""
    alerted: bool = False
    probe: str = ""
    memory: dict[str, int] = field(default_factory=dict)
    log_tail: LogTail | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"at": self.at.isoformat(), "step": self.step.value,
                                 "text": self.text}
        if self.alerted:
            found["alerted"] = True
        if self.probe:
            found["probe"] = self.probe
        if self.memory:
            found["memory"] = self.memory
        if self.log_tail is not None:
            found.update(self.log_tail.details())
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogLine:
        return cls(at=datetime.fromisoformat(data["at"]), step=IncidentStep(data["step"]),
                   text=data.get("text") or "", alerted=bool(data.get("alerted")),
                   probe=data.get("probe") or "", memory=dict(data.get("memory") or {}),
                   log_tail=LogTail.from_details(data))


def log_from_json(lines: Sequence[dict[str, Any]] | None) -> tuple[LogLine, ...]:
    return tuple(LogLine.from_json(line) for line in lines or ())


def log_to_json(lines: Sequence[LogLine]) -> list[dict[str, Any]]:
    return [line.to_json() for line in lines]


def samples_from_json(data: Sequence[Sequence[Any]] | None) -> tuple[Sample, ...]:
    """Docker's restart counts as kept in ``containers.docker_restarts``:
    ``[[at, count, exit_code], ...]``."""
    return tuple((datetime.fromisoformat(at), count, code) for at, count, code in data or ())


def samples_to_json(samples: Sequence[Sample]) -> list[list[Any]]:
    return [[at.isoformat(), count, code] for at, count, code in samples]


@dataclass(frozen=True)
class ContainerRow:
    """One row of ``containers``: a container of one host, what Docker last reported, its
    strike state and open incident."""

    host: str
    name: str
    container_id: str = ""
    image: str = ""
    compose_project: str | None = None
    compose_service: str | None = None
    status: str = ""
    health: str = "none"
    has_healthcheck: bool = False
    supervision: SupervisionMode = SupervisionMode.SUPERVISED
    state: ShownState = ShownState.OK
    phase: Phase = Phase.OK
    strikes: int = 0
    incident: int = 0
    strike_at: datetime | None = None
    healthy_since: datetime | None = None
    restarts: tuple[datetime, ...] = column(lambda times: tuple(sorted(times)), default=())
    stopped_by_user: bool = False
    stop_requested_at: datetime | None = None
    maintenance_label: bool = False
    maintenance_until: datetime | None = None
    label_problems: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    last_action: str | None = None  # an Action, or ack, maintenance_on, maintenance_off
    last_action_at: datetime | None = None
    last_reason: str | None = None
    next_check_at: datetime | None = None
    seen_at: datetime | None = None
    removed_at: datetime | None = None
    version: int = 0
    incident_class: TriageClass | None = None
    incident_log: tuple[LogLine, ...] = column(log_from_json, default=())
    folded_into: str | None = None
    affected: tuple[str, ...] = ()
    docker_restarts: tuple[Sample, ...] = column(samples_from_json, default=())
    oom_at: datetime | None = None
    oom_restart_at: datetime | None = None
    climbed_at: datetime | None = None

    def in_maintenance(self, now: datetime) -> bool:
        """By its ``aegis.maintenance`` label, or by ``aegis maintenance`` until a time."""
        return self.maintenance_label or self.maintenance_requested(now)

    def maintenance_requested(self, now: datetime) -> bool:
        """Put in maintenance by ``aegis maintenance``, until a time still ahead."""
        return self.maintenance_until is not None and self.maintenance_until > now

    def strike_state(self) -> StrikeState:
        return StrikeState(phase=self.phase, strikes=self.strikes, incident=self.incident,
                           strike_at=self.strike_at, healthy_since=self.healthy_since,
                           restarts=self.restarts, incident_class=self.incident_class,
                           folded_into=self.folded_into, oom_restart_at=self.oom_restart_at,
                           docker_restarts=self.docker_restarts, climbed_at=self.climbed_at)

    def stop_request(self, seen: Sighting) -> tuple[bool, datetime | None]:
        """Whether (and when) a person asked Docker to stop ``seen``. A request made of
        the container this row belonged to before (re-created under the same name, or
        adopted by its compose successor) does not apply to this one."""
        if not self.stopped_by_user or self.container_id not in ("", seen.id):
            return False, None
        return True, self.stop_requested_at


@dataclass(frozen=True)
class ContainerUpdate:
    """What a decision writes into a container's row (``container_save``): the sighting,
    the mode and labels aegis read, the new strike state (the last action only when
    something was done) and the incident's class, log and dependants."""

    host: str
    name: str
    version: int  # the row's, as read: the save happens only if nobody changed it since
    container_id: str
    image: str
    compose_project: str | None
    compose_service: str | None
    status: str
    health: str
    has_healthcheck: bool
    supervision: SupervisionMode
    state: ShownState
    phase: Phase
    strikes: int
    incident: int
    strike_at: datetime | None
    healthy_since: datetime | None
    restarts: tuple[datetime, ...]
    maintenance_label: bool
    label_problems: tuple[str, ...]
    labels: dict[str, str]
    last_action: Action | None
    last_action_at: datetime | None
    last_reason: str | None
    next_check_at: datetime | None
    seen_at: datetime
    stopped_by_user: bool
    stop_requested_at: datetime | None
    incident_class: TriageClass | None
    incident_log: tuple[LogLine, ...]
    folded_into: str | None
    affected: tuple[str, ...]
    docker_restarts: tuple[Sample, ...]
    oom_restart_at: datetime | None
    climbed_at: datetime | None = None

    # what a sweep compares: a steady host's sweep writes nothing
    _COMPARED = ("container_id", "image", "compose_project", "compose_service", "status",
                 "health", "has_healthcheck", "supervision", "state", "phase", "strikes",
                 "incident", "strike_at", "healthy_since", "restarts", "maintenance_label",
                 "label_problems", "labels", "next_check_at", "stopped_by_user",
                 "incident_class", "folded_into", "docker_restarts", "oom_restart_at",
                 "climbed_at")

    @classmethod
    def keeping(cls, row: ContainerRow, now: datetime) -> ContainerUpdate:
        """The update that writes ``row`` back as it stands, seen at ``now``: what to
        change fields of."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(row, name) for name in names if name != "seen_at"},
                   seen_at=now)

    def would_change(self, row: ContainerRow) -> bool:
        """Whether saving this would change ``row`` (a removed container's row always)."""
        return row.removed_at is not None or any(
            getattr(self, name) != getattr(row, name) for name in self._COMPARED)

    def applied_to(self, row: ContainerRow) -> ContainerRow:
        """``row`` as ``container_save`` leaves it: the offline twin of the save."""
        written = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "version"}
        for kept in ("last_action", "last_action_at", "last_reason"):
            if written[kept] is None:
                written[kept] = getattr(row, kept)
        return replace(row, **written, removed_at=None, version=row.version + 1)

    def params(self) -> dict[str, Any]:
        """The query parameters of ``container_save`` and ``container_restore``."""
        found = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        found.update(restarts=list(self.restarts), label_problems=list(self.label_problems),
                     affected=list(self.affected),
                     incident_log=Json(log_to_json(self.incident_log)),
                     docker_restarts=Json(samples_to_json(self.docker_restarts)))
        return found

    def to_json(self) -> dict[str, Any]:
        """As a spooled decision keeps it (the parameters, times as ISO-8601 text)."""
        found = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        found = {key: value.isoformat() if isinstance(value, datetime) else value
                 for key, value in found.items()}
        found.update(restarts=[t.isoformat() for t in self.restarts],
                     label_problems=list(self.label_problems), affected=list(self.affected),
                     incident_log=log_to_json(self.incident_log),
                     docker_restarts=samples_to_json(self.docker_restarts))
        return found


@dataclass(frozen=True)
class SweepState:
    """A row as a sweep first reads it: enough to tell whether its container may be left
    undecided (``steady``), and to notice it was removed."""

    name: str
    container_id: str
    version: int
    phase: Phase
    next_check_at: datetime | None
    removed_at: datetime | None
    maintenance_until: datetime | None
    oldest_restart: datetime | None

    def steady(self, now: datetime) -> bool:
        """No incident, timer, maintenance or restart leaving the hour's budget: nothing
        that changes with time alone."""
        return (self.phase == Phase.OK and self.next_check_at is None
                and self.removed_at is None and self.maintenance_until is None
                and (self.oldest_restart is None
                     or now - self.oldest_restart < BUDGET_WINDOW))


@dataclass(frozen=True)
class DueContainer:
    """A container whose strike timer has come due."""

    name: str
    container_id: str


@dataclass(frozen=True)
class UnrecordedRestart:
    """A restart decided and saved whose outcome no event records: its row and when it
    was decided."""

    row: ContainerRow
    restart_at: datetime


@dataclass(frozen=True)
class HostContainers:
    """One host's present containers, counted (``aegis hosts``, the status page)."""

    containers: int = 0
    supervised: int = 0
    unhealthy: int = 0
    in_incident: int = 0
    incidents: int = 0  # open incidents: a dependant folded into its parent's is in that one


@dataclass(frozen=True)
class OpenIncident:
    """A container's open incident, as storm detection counts it: its number and log."""

    name: str
    incident: int
    incident_log: tuple[LogLine, ...] = column(log_from_json, default=())


@dataclass(frozen=True)
class ContainerGauge:
    """What /metrics tells of one container of this host."""

    name: str
    state: ShownState
    strikes: int
    supervision: SupervisionMode
    status: str  # running, exited... as Docker last reported it
    health: str  # healthy, unhealthy, starting or none, as Docker last reported it
    has_healthcheck: bool
    phase: Phase
    folded_into: str | None  # the parent whose incident this one's is part of

    @property
    def opens_incident(self) -> bool:
        """An incident of its own is open (a folded dependant's is its parent's)."""
        return self.phase != Phase.OK and self.folded_into is None


@dataclass(frozen=True)
class InMaintenance:
    host: str
    container: str


class Containers:
    """The named queries of the ``containers`` table, on the pool or in a transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    # --- the supervisor's ---

    def sweep_states(self, host: str) -> list[SweepState]:
        """Every row of ``host``, present or removed, as a sweep first reads it."""
        return as_rows(SweepState, self.db.fetch_all("containers_sweep_state", host=host))

    def by_names(self, host: str, names: Sequence[str]) -> list[ContainerRow]:
        """The rows of some containers of ``host``."""
        if not names:
            return []
        return as_rows(ContainerRow, self.db.fetch_all("containers_by_names", host=host,
                                                       names=list(names)))

    def by_name(self, host: str, name: str) -> ContainerRow | None:
        return maybe_row(ContainerRow,
                         self.db.fetch_one("container_by_name", host=host, name=name))

    def due(self, host: str, now: datetime) -> list[DueContainer]:
        """Containers whose strike timer has come due, the earliest first."""
        return as_rows(DueContainer, self.db.fetch_all("containers_due", host=host, now=now))

    def next_due(self, host: str, now: datetime) -> datetime | None:
        """The earliest strike timer still ahead, or None."""
        row = self.db.fetch_one("containers_next_due", host=host, now=now)
        return None if row is None else row["next_check_at"]

    def first_row(self, host: str, seen: Sighting, has_healthcheck: bool,
                  now: datetime) -> ContainerRow | None:
        """The row of a container this host has none for under its name: its own under an
        old name (renamed while no daemon saw the event), a removed container's of the
        same compose service (re-created by compose), else a new one."""
        renamed = self.db.fetch_one("container_adopt_renamed", host=host, name=seen.name,
                                    container_id=seen.id)
        if renamed is not None:
            return as_row(ContainerRow, renamed)
        if seen.compose_project and seen.compose_service:
            adopted = self.db.fetch_one("container_adopt", host=host, name=seen.name,
                                        compose_project=seen.compose_project,
                                        compose_service=seen.compose_service)
            if adopted is not None:
                return as_row(ContainerRow, adopted)
        self.db.execute("container_insert", host=host, name=seen.name, container_id=seen.id,
                        image=seen.image, compose_project=seen.compose_project,
                        compose_service=seen.compose_service, status=seen.status,
                        health=seen.health, has_healthcheck=has_healthcheck, seen_at=now)
        return self.by_name(host, seen.name)

    def save(self, update: ContainerUpdate, event: Event | None = None) -> bool:
        """What was observed and decided, and ``event`` with it in the same statement
        (recorded only if the row is written); False when the row changed since it was
        read (nothing written)."""
        return self.db.fetch_one("container_save", **update.params(),
                                 **_event_params(event)) is not None

    def lock(self, host: str, name: str) -> ContainerRow | None:
        """The row, locked until the transaction ends."""
        return maybe_row(ContainerRow,
                         self.db.fetch_one("container_lock", host=host, name=name))

    def recent_incidents(self, host: str, since: datetime) -> list[OpenIncident]:
        """The open incidents of ``host`` begun at or after ``since`` (not folded into
        another's), oldest first."""
        return as_rows(OpenIncident, self.db.fetch_all("containers_recent_incidents",
                                                       host=host, since=since))

    def set_log(self, host: str, name: str, incident: int, log: Sequence[LogLine],
                affected: Sequence[str]) -> ContainerRow | None:
        """The open incident's log after a step outside a decision; None when the row has
        moved on to another incident."""
        return maybe_row(ContainerRow, self.db.fetch_one(
            "container_set_log", host=host, name=name, incident=incident,
            incident_log=Json(log_to_json(log)), affected=list(affected)))

    def open_parent(self, host: str, seen: Sighting) -> str | None:
        """The incident ``seen`` folds into: the container it depends on (its network's
        owner, a compose service it depends on) when that one is in an open incident, or
        that one's own parent when it is folded too; None when there is none."""
        row = self.db.fetch_one("container_open_parent", host=host, name=seen.name,
                                network_parent=seen.network_parent or "",
                                compose_project=seen.compose_project or "",
                                services=list(seen.depends_on))
        return None if row is None else str(row["folded_into"] or row["name"])

    def note_oom(self, host: str, container_id: str, now: datetime) -> None:
        self.db.execute("container_note_oom", host=host, container_id=container_id, now=now)

    def set_stopped(self, host: str, container_id: str, stopped: bool, now: datetime) -> None:
        self.db.execute("container_set_stopped", host=host, container_id=container_id,
                        stopped=stopped, now=now)

    def mark_removed(self, host: str, container_id: str, now: datetime) -> None:
        self.db.execute("container_mark_removed", host=host, container_id=container_id,
                        now=now)

    def rename(self, host: str, old_name: str, new_name: str) -> None:
        self.db.execute("container_rename", host=host, old_name=old_name, new_name=new_name)

    def restarts_unrecorded(self, host: str) -> list[UnrecordedRestart]:
        """Restarts decided and saved whose outcome no event records."""
        return [UnrecordedRestart(as_row(ContainerRow, row), row["restart_at"])
                for row in self.db.fetch_all("containers_restart_unrecorded", host=host)]

    # --- operators, reports, metrics, retention ---

    def listing(self, host: str | None) -> list[ContainerRow]:
        """``aegis containers``: the rows of ``host`` (None: every host)."""
        return as_rows(ContainerRow, self.db.fetch_all("containers_listing", host=host))

    def acknowledge(self, host: str, name: str, now: datetime, reason: str,
                    log: Sequence[LogLine]) -> None:
        self.db.execute("container_ack", host=host, name=name, now=now, reason=reason,
                        incident_log=Json(log_to_json(log)))

    def set_maintenance(self, host: str, name: str, until: datetime | None,
                        now: datetime) -> ContainerRow | None:
        """Maintenance until ``until`` (None: ended); None when ``host`` has no such row."""
        return maybe_row(ContainerRow, self.db.fetch_one(
            "container_maintenance", host=host, name=name, until=until,
            action="maintenance_on" if until else "maintenance_off", now=now))

    def in_maintenance(self, as_of: datetime, limit: int) -> list[InMaintenance]:
        """Every container in maintenance at ``as_of``."""
        return as_rows(InMaintenance, self.db.fetch_all("status_maintenance_containers",
                                                        as_of=as_of, limit=limit))

    def per_host(self) -> dict[str, HostContainers]:
        """host -> counts of its present containers and its open incidents."""
        return {row["host"]: as_row(HostContainers, row)
                for row in self.db.fetch_all("fleet_containers")}

    def any_present(self) -> bool:
        row = self.db.fetch_one("metrics_has_containers")
        return bool(row and row["present"])

    def gauges(self, host: str) -> list[ContainerGauge]:
        """Name, state, strikes, health and incident of each present container of
        ``host``."""
        return as_rows(ContainerGauge, self.db.fetch_all("metrics_containers", host=host))

    def of_note(self, as_of: datetime, limit: int) -> list[ContainerRow]:
        """Present containers of every host in an incident, unhealthy, struck or in
        maintenance at ``as_of``: escalated first (the status page)."""
        return as_rows(ContainerRow, self.db.fetch_all("page_containers_of_note",
                                                       as_of=as_of, limit=limit))

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> PrunedBatch:
        """Delete one batch of rows of containers removed before ``cutoff``."""
        return PrunedBatch.of(self.db.fetch_one("cleanup_containers_batch", cutoff=cutoff,
                                                from_time=from_time, batch_rows=batch_rows))


# --- the supervisor's copy of its rows, for a database outage ---


class LastKnownRows:
    """Rows as last read or written, per host and name, shared by the supervisors of one
    supervision (the watcher's, the sweep's, each background restart's): what they decide
    from while PostgreSQL is down."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], ContainerRow] = {}
        self._lock = threading.Lock()

    def keep(self, *rows: ContainerRow | None) -> None:
        with self._lock:
            for row in rows:
                if row is not None:
                    self._rows[(row.host, row.name)] = row

    def keep_if_unchanged(self, read: ContainerRow, new: ContainerRow) -> bool:
        """Replace the kept row with ``new`` if it is still the one ``read`` (same
        version): the offline twin of ``container_save``'s check, so two threads deciding
        from the same row cannot both act. False when another decision came first."""
        key = (read.host, read.name)
        with self._lock:
            current = self._rows.get(key)
            if current is not None and current.version != read.version:
                return False
            self._rows[key] = new
            return True

    def get(self, host: str, name: str) -> ContainerRow | None:
        """The kept row of one container, or None."""
        with self._lock:
            return self._rows.get((host, name))

    def of(self, host: str, name: str | None = None) -> list[ContainerRow]:
        """The kept rows of ``host`` (or of one container)."""
        with self._lock:
            return [row for (h, n), row in self._rows.items()
                    if h == host and (name is None or n == name)]

    def update(self, host: str, container_id: str, **values: Any) -> None:
        """The kept rows of ``container_id`` with ``values`` set: the offline twin of
        ``container_set_stopped`` and ``container_note_oom``."""
        with self._lock:
            for key, row in self._rows.items():
                if key[0] == host and row.container_id == container_id:
                    self._rows[key] = replace(row, **values)

    def due(self, host: str, now: datetime) -> list[DueContainer]:
        """The offline twin of ``containers_due``: kept rows whose timer has come due."""
        return [DueContainer(row.name, row.container_id) for row in self.of(host)
                if row.removed_at is None and row.next_check_at is not None
                and row.next_check_at <= now]

    def next_due(self, host: str, now: datetime) -> datetime | None:
        """The offline twin of ``containers_next_due``: the earliest timer still ahead."""
        return min((row.next_check_at for row in self.of(host)
                    if row.removed_at is None and row.next_check_at is not None
                    and row.next_check_at > now), default=None)

    def open_parent(self, host: str, seen: Sighting) -> str | None:
        """The offline twin of ``Containers.open_parent``."""
        found = next((row for row in self.of(host) if row.phase != Phase.OK
                      and row.name != seen.name and row.removed_at is None
                      and (seen.network_parent in (row.container_id, row.name)
                           or (row.compose_project == seen.compose_project
                               and row.compose_service in seen.depends_on))), None)
        return None if found is None else found.folded_into or found.name


# --- decisions spooled while the database is unreachable ---


def decision_record(update: ContainerUpdate,
                    events: Sequence[tuple[Event, Notification | None]]) -> dict[str, Any]:
    """A decision made while the database was unreachable, as a spool record."""
    return {"kind": "container_decision", "params": update.to_json(),
            "events": [event_record(event, notify) for event, notify in events]}


def replay_decision(tx: Queries, record: dict[str, Any]) -> None:
    """Write a spooled decision (spool kind ``container_decision``): the row whatever its
    version (only this host's daemon decides for its containers) and its events, each
    once (by uid)."""
    # a record spooled by a version before 0009_incidents lacks the incident's columns
    params = {"incident_class": None, "incident_log": [], "folded_into": None, "affected": [],
              "docker_restarts": [], "oom_restart_at": None, "climbed_at": None,
              **record["params"]}
    for key in _TIMES:
        if params.get(key) is not None:
            params[key] = datetime.fromisoformat(params[key])
    params["restarts"] = [datetime.fromisoformat(t) for t in params["restarts"]]
    params["incident_log"] = Json(params["incident_log"])
    params["docker_restarts"] = Json(params["docker_restarts"])
    params.setdefault("labels", None)  # spooled by a version that kept no labels
    tx.execute("container_restore", **params)
    for event in record["events"]:
        insert_event(tx, *event_from_record(event))
