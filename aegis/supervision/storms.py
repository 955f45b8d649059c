"""One message for a storm, and the owner of the ``storms`` table
(aegis/storage/sql/storms.sql).

When AEGIS_STORM_THRESHOLD containers of one host open incidents within AEGIS_STORM_WINDOW
(the host lost its network, its disk or a database they share), their incidents become
one storm: one living message for the host (``web-01: 12 containers unhealthy since
09:41: a, b, c …``), edited as each is restarted, escalates or recovers, and resolved when
every one is closed. Healing goes on per container exactly as before; only the messages
change. A member's incident has no message of its own while the storm lasts, and an
incident of the host opening within the window of the storm's latest opening joins it.
An incident that had posted its own message before the storm began keeps it: its steps
edit both.

Each step of an incident is handed to ``route`` in the transaction that records it: the
storm's row is locked, the member's standing updated and the message's next version
queued in the outbox, so the edits follow the steps in order, a database outage spools
them like every other row, and a restart of aegis finds the storm where it was. The
database is asked only when the recent openings this process counted reach the threshold
or a storm may be open (``StormWatch``): the strike 1 of an ordinary incident does no more
work than before. Locks are taken in one order: a container's row (a dependant's before its
parent's), then the host's storm detection (an advisory lock, so two openings at once
count each other), then its storms.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from aegis.core.clock import utcnow
from aegis.core.config import AlertStyle, Settings
from aegis.notify.discord import TITLE_MAX, utf16_len
from aegis.notify.messages import escape_markdown
from aegis.storage.db import Json, Queries
from aegis.storage.events import Event, EventType, Importance, make_event
from aegis.storage.outbox import Channel, IncidentStep, Notification, Outbox, enqueue
from aegis.storage.rows import as_row, as_rows, column
from aegis.storage.store import insert_event
from aegis.supervision.incidents import BODY_MAX_CHARS, CLOSING, STATES
from aegis.supervision.repository import (
    ContainerRow,
    Containers,
    ContainerUpdate,
    LogLine,
    OpenIncident,
)

SOURCE = "supervisor"
# How a storm's message groups its members, worst first: the heading of each standing.
GROUPS = (
    (IncidentStep.ESCALATED, "Escalated"),
    (IncidentStep.RESTART_FAILED, "Restart failed"),
    (IncidentStep.RECREATED, "Recreated"),
    (IncidentStep.STACK_RESTARTED, "Restarted with its stack"),
    (IncidentStep.RESTARTED, "Restarted"),
    (IncidentStep.STRUCK, "Unhealthy"),
    (IncidentStep.ACKNOWLEDGED, "Acknowledged"),
    (IncidentStep.RESET, "No longer supervised"),
    (IncidentStep.RECOVERED, "Recovered"),
)
HEALING = (IncidentStep.RESTARTED, IncidentStep.RESTART_FAILED, IncidentStep.RECREATED,
           IncidentStep.STACK_RESTARTED)


# --- a storm and its members ---


@dataclass(frozen=True)
class Member:
    """One incident a storm covers, and where it stands."""

    name: str
    incident: int
    step: IncidentStep  # the latest step that says where it stands
    at: datetime  # when the incident began
    restarts: int = 0
    own_message: bool = False  # it had posted a message of its own before the storm

    @property
    def closed(self) -> bool:
        return self.step in CLOSING

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "incident": self.incident, "step": self.step.value,
                "at": self.at.isoformat(), "restarts": self.restarts,
                "own_message": self.own_message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Member:
        return cls(name=data["name"], incident=int(data["incident"]),
                   step=IncidentStep(data["step"]), at=datetime.fromisoformat(data["at"]),
                   restarts=int(data.get("restarts") or 0),
                   own_message=bool(data.get("own_message")))

    @classmethod
    def of(cls, found: OpenIncident) -> Member:
        """The member an open incident makes, from its log."""
        log = found.incident_log
        return cls(name=found.name, incident=found.incident, step=standing(log), at=log[0].at,
                   restarts=sum(1 for line in log if line.step == IncidentStep.RESTARTED),
                   own_message=any(line.alerted for line in log))


def members_from_json(data: Sequence[dict[str, Any]] | None) -> tuple[Member, ...]:
    return tuple(Member.from_json(item) for item in data or ())


def standing(log: Sequence[LogLine]) -> IncidentStep:
    """Where an incident with this log stands: its latest step that says so."""
    return next((line.step for line in reversed(log) if line.step in STATES),
                IncidentStep.STRUCK)


@dataclass(frozen=True)
class MemberStep:
    """One step of a container's incident, as a storm hears of it."""

    name: str
    incident: int
    line: LogLine
    # the step that opened the incident (its strike 1, or an escalation Docker's own
    # give-up opened), not folded into another container's
    opening: bool = False
    # the incident had a message of its own before this step
    own_message: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "incident": self.incident, "line": self.line.to_json(),
                "opening": self.opening, "own_message": self.own_message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MemberStep:
        return cls(name=data["name"], incident=int(data["incident"]),
                   line=LogLine.from_json(data["line"]), opening=bool(data.get("opening")),
                   own_message=bool(data.get("own_message")))

    def applied_to(self, member: Member | None) -> Member:
        """The member this step leaves (a new one for an incident that joins)."""
        if member is None:
            member = Member(self.name, self.incident, IncidentStep.STRUCK, self.line.at,
                            own_message=self.own_message)
        if self.line.step == IncidentStep.RESTARTED:
            member = replace(member, restarts=member.restarts + 1)
        if self.line.step in STATES:
            member = replace(member, step=self.line.step)
        return member


def decided_step(row: ContainerRow, update: ContainerUpdate) -> MemberStep | None:
    """The step a decision adds to a container's incident, or None when it adds none."""
    log = update.incident_log
    if not log or (update.incident == row.incident
                   and len(log) <= len(row.incident_log)):
        return None
    return MemberStep(update.name, update.incident, log[-1],
                      opening=len(log) == 1 and update.folded_into is None,
                      own_message=any(line.alerted for line in log[:-1]))


@dataclass(frozen=True)
class Storm:
    """One row of ``storms``: a host's storm of incidents."""

    id: int
    host: str
    started_at: datetime
    members: tuple[Member, ...] = column(members_from_json, default=())
    edits: int = 0
    ended_at: datetime | None = None

    @property
    def thread(self) -> str:
        return f"storm:{self.host}:{self.id}"

    @cached_property
    def open_members(self) -> tuple[Member, ...]:
        return tuple(member for member in self.members if not member.closed)

    @property
    def over(self) -> bool:
        return bool(self.members) and not self.open_members

    @property
    def state(self) -> IncidentStep:
        """Where the storm stands, as its message's colour says: escalated while one of its
        open incidents is, restarted while one is being healed, then unhealthy; recovered
        once all are closed."""
        steps = {member.step for member in self.open_members}
        if not steps:
            return IncidentStep.RECOVERED
        if IncidentStep.ESCALATED in steps:
            return IncidentStep.ESCALATED
        return IncidentStep.RESTARTED if steps & set(HEALING) else IncidentStep.STRUCK

    def gathering(self, at: datetime, window_s: float) -> bool:
        """Whether an incident opened ``at`` joins this storm: within the window of its
        latest opening. Later, the storm no longer grows (an escalation nobody
        acknowledges may keep it open for days), and the incident is on its own."""
        latest = max((member.at for member in self.members), default=self.started_at)
        return (at - latest).total_seconds() <= window_s

    def member(self, name: str, incident: int) -> Member | None:
        return next((m for m in self.members if (m.name, m.incident) == (name, incident)),
                    None)

    def with_member(self, member: Member) -> Storm:
        """The storm with ``member`` in place of its earlier standing (or added)."""
        key = (member.name, member.incident)
        if self.member(*key) is None:
            return replace(self, members=(*self.members, member))
        return replace(self, members=tuple(member if (m.name, m.incident) == key else m
                                           for m in self.members))


# --- its message ---


def storm_message(settings: Settings, storm: Storm) -> Notification | None:
    """The message of a storm's latest version (``storm.edits``): the post that starts
    it, an edit, or the one that says it is over; None for an edit with
    AEGIS_ALERT_STYLE=posts (a post at its start and at its end only)."""
    first, over = storm.edits == 1, storm.over
    state = storm.state
    importance = (Importance.MEDIUM if over else Importance.CRITICAL
                  if state == IncidentStep.ESCALATED else Importance.HIGH)
    fields = {"host": storm.host, "containers": str(len(storm.members)),
              "restarts": str(sum(member.restarts for member in storm.members))}
    dedup_key = f"storm:{storm.host}:{storm.id}:{storm.edits}"
    if settings.alert_style == AlertStyle.POSTS:
        if not (first or over):
            return None
        return Notification(channel=Channel.ALERTS, title=storm_title(storm),
                            body=storm_body(storm), importance=importance, fields=fields,
                            dedup_key=dedup_key, groupable=False, state=state)
    # destinations that cannot edit (Apprise) hear of its start and its end only
    return Notification(channel=Channel.ALERTS, title=storm_title(storm),
                        body=storm_body(storm), importance=importance, fields=fields,
                        dedup_key=dedup_key, groupable=False, thread=storm.thread,
                        state=state, edit_only=not (first or over))


def storm_title(storm: Storm) -> str:
    """``web-01: 12 containers unhealthy since 09:41: a, b, c …`` (the open ones), or
    ``web-01: storm over after 6 min, 12 containers``; within Discord's title limit."""
    if storm.over:
        lasted = (storm.ended_at or storm.started_at) - storm.started_at
        return (f"{storm.host}: storm over after {lasted.total_seconds() / 60:.0f} min, "
                f"{_count(len(storm.members))}")
    names = [member.name for member in storm.open_members]
    head = f"{storm.host}: {_count(len(names))} unhealthy since {storm.started_at:%H:%M}: "
    return head + listed(names, TITLE_MAX - utf16_len(head))


def storm_body(storm: Storm) -> str:
    """The message's description: the headline, the members by where each stands, and
    how to take one over; at most BODY_MAX_CHARS (as Discord counts them), the lists of
    names cut first. aegis's own markdown; names escaped."""
    total = len(storm.members)
    if storm.over:
        restarts = sum(member.restarts for member in storm.members)
        minutes = ((storm.ended_at or storm.started_at) - storm.started_at).total_seconds() / 60
        head = [f"**Resolved** after {minutes:.0f} min: {_count(total)}, {restarts} restart"
                f"{'' if restarts == 1 else 's'}."]
    else:
        head = [f"**{_count(len(storm.open_members))} unhealthy** on {storm.host} since "
                f"{storm.started_at:%H:%M:%S} UTC ({total} in all): their incidents opened "
                "together, so this one message follows them all. aegis heals each as usual.",
                ""]
    groups = [(heading, [escape_markdown(m.name) for m in storm.members if m.step == step])
              for step, heading in GROUPS]
    groups = [(heading, names) for heading, names in groups if names]
    tail = []
    if any(member.step == IncidentStep.ESCALATED for member in storm.open_members):
        tail = ["", "aegis takes no further action on an escalated container until "
                    "`aegis ack NAME` or it is healthy again."]
    elif not storm.over:
        tail = ["", "Take one over: `aegis ack NAME`"]
    fixed = sum(utf16_len(line) + 1 for line in [*head, *tail])
    fixed += sum(utf16_len(f"{heading} ({len(names)}): ") + 1 for heading, names in groups)
    room = max(0, BODY_MAX_CHARS - fixed) // max(1, len(groups))
    lines = [f"{heading} ({len(names)}): {listed(names, room)}" for heading, names in groups]
    return "\n".join([*head, *lines, *tail])


def listed(names: Sequence[str], room: int) -> str:
    """``names`` joined with commas in at most ``room`` characters: as many as fit, then
    ``… and N more``."""
    text = ", ".join(names)
    if utf16_len(text) <= room:
        return text
    used, kept = 0, 0  # the characters of the names kept so far, with their commas
    for name in names:
        grown = used + (2 if kept else 0) + utf16_len(name)
        if grown + utf16_len(f", … and {len(names) - kept - 1} more") > room:
            break
        used, kept = grown, kept + 1
    more = f"… and {len(names) - kept} more"
    return ", ".join([*names[:kept], more])


def _count(containers: int) -> str:
    return f"{containers} container{'' if containers == 1 else 's'}"


# --- the table ---


class Storms:
    """The named queries of the ``storms`` table, inside a caller's transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    def serialize(self, host: str) -> None:
        """Hold the host's storm detection until the transaction ends."""
        self.db.fetch_one("storm_serialize", host=host)

    def lock_open(self, host: str) -> list[Storm]:
        """The host's open storms, oldest first, locked until the transaction ends."""
        return as_rows(Storm, self.db.fetch_all("storm_lock_open", host=host))

    def start(self, host: str, started_at: datetime, members: Sequence[Member]) -> Storm:
        """A new open storm (its first version)."""
        return as_row(Storm, self.db.fetch_one(
            "storm_start", host=host, started_at=started_at,
            members=Json([member.to_json() for member in members])) or {})

    def save(self, storm: Storm) -> None:
        self.db.execute("storm_save", id=storm.id, edits=storm.edits, ended_at=storm.ended_at,
                        members=Json([member.to_json() for member in storm.members]))


# --- what this process remembers between steps ---


class StormWatch:
    """When the incidents this process saw opened lately, and whether a storm may be open
    on its host (None: not known since it started): what keeps the database out of an
    ordinary step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._openings: deque[datetime] = deque()
        self._open: bool | None = None

    def worth_asking(self, settings: Settings, step: MemberStep) -> bool:
        """Whether ``step`` may start, join or edit a storm (counted, if it opens an
        incident)."""
        with self._lock:
            self._count(settings, step)
            return self._asks(settings, step)

    def quiet(self, settings: Settings, step: MemberStep) -> bool:
        """Whether ``step`` certainly needs no storm (storms off, or none open and too
        few openings to start one): then it is counted as ``worth_asking`` counts it, and
        nothing routes it. False, with nothing counted, when ``route`` must see it."""
        with self._lock:
            if not settings.storm_threshold:
                return True
            self._count(settings, step)
            if not self._asks(settings, step):
                return True
            if step.opening:
                self._openings.pop()  # route counts it
            return False

    def _count(self, settings: Settings, step: MemberStep) -> None:
        if step.opening:
            self._openings.append(step.line.at)
            since = step.line.at - timedelta(seconds=settings.storm_window_s)
            while self._openings and self._openings[0] < since:
                self._openings.popleft()

    def _asks(self, settings: Settings, step: MemberStep) -> bool:
        if self._open is not False:
            return True
        return step.opening and len(self._openings) >= settings.storm_threshold

    def learn(self, storm_open: bool, openings: Sequence[datetime] | None = None) -> None:
        """What the database said: whether a storm is open, and the openings it counts."""
        with self._lock:
            self._open = storm_open
            if openings is not None:
                self._openings = deque(sorted(openings))


# --- routing a step ---


@dataclass(frozen=True)
class Routed:
    """What a step's routing did: whether the incident's own message still goes out, and
    the storm's events it recorded (for the log)."""

    keep_own: bool = True
    events: tuple[Event, ...] = ()


KEEP = Routed()


def route(tx: Queries, settings: Settings, step: MemberStep,
          watch: StormWatch | None = None) -> Routed:
    """Route one step of a container's incident, in the transaction that records it: the
    storm it starts (its post queued with ``storm_started``), joins or moves (the next
    version of the storm's message queued; ``storm_ended`` with the last). ``watch``:
    what this process remembers, so an ordinary step asks the database nothing."""
    if not settings.storm_threshold:
        return KEEP
    if watch is not None and not watch.worth_asking(settings, step):
        return KEEP
    storms = Storms(tx)
    storms.serialize(settings.host)
    open_storms = storms.lock_open(settings.host)
    if watch is not None:
        watch.learn(bool(open_storms))
    holding = next((found for found in open_storms
                    if found.member(step.name, step.incident) is not None), None)
    if holding is None and not step.opening:
        return KEEP  # an incident older than every storm: its own message
    if holding is None and open_storms and open_storms[-1].gathering(
            step.line.at, settings.storm_window_s):
        holding = open_storms[-1]
    if holding is None:
        return _detect(tx, settings, step, open_storms, watch)
    routed = _move(tx, settings, holding, step)
    if routed.events and watch is not None:  # it ended
        watch.learn(len(open_storms) > 1)
    return routed


def _move(tx: Queries, settings: Settings, storm: Storm, step: MemberStep) -> Routed:
    """A member's step (or a new member's first) in ``storm``: its message's next version,
    and its end when this step closes its last open incident."""
    member = storm.member(step.name, step.incident)
    keep_own = step.own_message if member is None else member.own_message
    moved = storm.with_member(step.applied_to(member))
    if moved == storm:
        return Routed(keep_own=keep_own)  # a step the storm's message does not show
    moved = replace(moved, edits=storm.edits + 1,
                    ended_at=step.line.at if moved.over else None)
    Storms(tx).save(moved)
    notify = storm_message(settings, moved)
    events: tuple[Event, ...] = ()
    if moved.over:
        events = (_event(settings, EventType.STORM_ENDED, moved,
                         f"storm over on {settings.host}: all of its "
                         f"{_count(len(moved.members))} closed"),)
        insert_event(tx, events[0], notify)
    elif notify is not None:
        enqueue(tx, notify, host=settings.host, event_uid=None)
    # the newest version carries the whole message: the edits still waiting are needless
    Outbox(tx).supersede_edits(moved.thread)
    return Routed(keep_own=keep_own, events=events)


def _detect(tx: Queries, settings: Settings, step: MemberStep, open_storms: Sequence[Storm],
            watch: StormWatch | None) -> Routed:
    """Start a storm if this opening makes the threshold with the host's other recent
    incidents not in a storm yet (the step's own row is written already, in ``tx``)."""
    since = step.line.at - timedelta(seconds=settings.storm_window_s)
    found = [item for item in Containers(tx).recent_incidents(settings.host, since)
             if not any(s.member(item.name, item.incident) for s in open_storms)]
    if watch is not None:
        watch.learn(bool(open_storms), [item.incident_log[0].at for item in found])
    if len(found) < settings.storm_threshold:
        return KEEP
    members = [Member.of(item) for item in found]
    # this step's own message is not out yet, whatever its line says
    members = [replace(m, own_message=step.own_message)
               if (m.name, m.incident) == (step.name, step.incident) else m for m in members]
    storm = Storms(tx).start(settings.host, step.line.at, members)
    if watch is not None:
        watch.learn(True)
    event = _event(settings, EventType.STORM_STARTED, storm,
                   f"storm on {settings.host}: {_count(len(members))} opened incidents "
                   f"within {settings.storm_window_s:g}s; one message for them all")
    insert_event(tx, event, storm_message(settings, storm))
    return Routed(keep_own=step.own_message, events=(event,))


def _event(settings: Settings, event_type: EventType, storm: Storm, summary: str) -> Event:
    """A storm's start (high) or end (medium), at the time of the step that made it."""
    started = event_type == EventType.STORM_STARTED
    return make_event(event_type, summary,
                      importance=Importance.HIGH if started else Importance.MEDIUM,
                      host=settings.host, source=SOURCE,
                      timestamp=storm.started_at if started else storm.ended_at or utcnow(),
                      details={"host": settings.host, "storm": storm.id,
                               "containers": [member.name for member in storm.members]})
