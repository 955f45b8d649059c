"""Events of the episodic history: what one is, the types aegis writes, how one is
validated, and the rows of the history's aggregates (counts, decisions, open
escalations...). Recording and querying them is the store's (aegis/storage/store.py)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from aegis.core.errors import UsageError
from aegis.core.jsonable import json_safe, to_json
from aegis.storage.db import Json, Row

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_SUMMARY_CHARS = 4000


class Importance(StrEnum):
    """How much an event matters, lowest first (PostgreSQL's ``importance`` type)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for low up to 3 for critical: compare importances by this."""
        return list(Importance).index(self)


class EventType(StrEnum):
    """Every event type aegis itself records: the public contract of
    ``episodic_memory.event_type`` (docs/sql.md lists them with their importance). Jobs of
    an operator's may record types of their own (any snake_case name)."""

    # the daemon
    DAEMON_STARTED = "daemon_started"
    DAEMON_STOPPED = "daemon_stopped"
    DAEMON_UNCLEAN_RESTART = "daemon_unclean_restart"
    SPOOL_RECORD_SET_ASIDE = "spool_record_set_aside"
    DATABASE_OUTAGE = "database_outage"
    # jobs and tasks
    JOB_TIMEOUT = "job_timeout"
    JOB_OVERRUN = "job_overrun"
    JOB_SILENT = "job_silent"
    JOB_RESUMED = "job_resumed"
    TASK_FAILED = "task_failed"
    # jobs a container's labels declare
    LABEL_JOB_REGISTERED = "label_job_registered"
    LABEL_JOB_UNREGISTERED = "label_job_unregistered"
    LABEL_JOB_INVALID = "label_job_invalid"
    LABEL_JOB_FAILED = "label_job_failed"
    LABEL_JOB_RECOVERED = "label_job_recovered"
    # the fleet
    PEER_SILENT = "peer_silent"
    PEER_RESUMED = "peer_resumed"
    # aegis's own jobs
    DB_UNREACHABLE = "db_unreachable"
    DOCKER_HEALTH_CHECK = "docker_health_check"
    MORNING_STATUS = "morning_status"
    EVENING_SUMMARY = "evening_summary"
    MEMORY_CLEANUP = "memory_cleanup"
    # the Docker engine
    DOCKER_UNAVAILABLE = "docker_unavailable"
    DOCKER_AVAILABLE = "docker_available"
    DOCKER_OUTAGE = "docker_outage"
    # a container's incident
    CONTAINER_UNHEALTHY = "container_unhealthy"
    CONTAINER_FOLDED = "container_folded"
    CONTAINER_RESTARTED = "container_restarted"
    CONTAINER_RESTART_FAILED = "container_restart_failed"
    CONTAINER_DEPENDENT_SKIPPED = "container_dependent_skipped"
    CONTAINER_RECREATED = "container_recreated"
    CONTAINER_RECREATE_FAILED = "container_recreate_failed"
    CONTAINER_STACK_RESTARTED = "container_stack_restarted"
    CONTAINER_ESCALATED = "container_escalated"
    CONTAINER_ACKNOWLEDGED = "container_acknowledged"
    ESCALATION_PAGED = "escalation_paged"
    CONTAINER_RECOVERED = "container_recovered"
    CONTAINER_STRIKES_RESET = "container_strikes_reset"
    # a storm: many incidents of one host at once, one message
    STORM_STARTED = "storm_started"
    STORM_ENDED = "storm_ended"
    # a container's labels and operators' requests
    CONTAINER_BAD_LABEL = "container_bad_label"
    CONTAINER_ORCHESTRATED = "container_orchestrated"
    CONTAINER_MAINTENANCE = "container_maintenance"
    CONTAINER_MAINTENANCE_ENDED = "container_maintenance_ended"
    MAINTENANCE_WINDOW_ENDED = "maintenance_window_ended"
    # notifications
    NOTIFICATIONS_UNDELIVERABLE = "notifications_undeliverable"
    NOTIFICATION_GIVEN_UP = "notification_given_up"
    NOTIFICATION_TEST = "notification_test"


# The events that close a container's incident: recovered, acknowledged, supervision
# ended.
INCIDENT_ENDS = (EventType.CONTAINER_RECOVERED, EventType.CONTAINER_ACKNOWLEDGED,
                 EventType.CONTAINER_STRIKES_RESET)


@dataclass(frozen=True)
class Event:
    event_type: str  # an EventType, or a type of an operator's own
    summary: str
    importance: Importance
    host: str
    source: str
    timestamp: datetime
    details: dict[str, Any] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json(self, only=("timestamp", "event_type", "summary", "importance", "host",
                                   "source", "details"))

    def params(self) -> dict[str, Any]:
        return {"uid": self.uid, "timestamp": self.timestamp, "event_type": self.event_type,
                "summary": self.summary, "details": Json(self.details),
                "importance": self.importance, "host": self.host, "source": self.source}

    @classmethod
    def from_row(cls, row: Row) -> Event:
        return cls(event_type=row["event_type"], summary=row["summary"],
                   importance=Importance(row["importance"]), host=row["host"], source=row["source"],
                   timestamp=row["timestamp"], details=row["details"] or {},
                   uid=str(row["uid"]), id=row["id"])


def validate_importance(importance: str) -> Importance:
    try:
        return Importance(importance)
    except ValueError:
        raise UsageError(f"importance {importance!r} is not one of "
                         f"{', '.join(Importance)}") from None


# an event's fields, by keyword
def make_event(event_type: str, summary: str, *, importance: str,  # noqa: PLR0913
               host: str, source: str,
               details: dict[str, Any] | None, timestamp: datetime) -> Event:
    """A validated event with JSON-safe details."""
    if not _EVENT_TYPE.match(event_type):
        raise UsageError(f"event type {event_type!r} is not snake_case (a-z, 0-9, _)")
    level = validate_importance(importance)
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[: MAX_SUMMARY_CHARS - 1] + "…"
    return Event(event_type=event_type, summary=summary, importance=level, host=host,
                 source=source, timestamp=timestamp, details=json_safe(details or {}))


# --- what the history's aggregates hand back (the digest, the status page, /metrics) ---


@dataclass(frozen=True)
class EventCount:
    """Events of one type and importance."""

    importance: Importance
    event_type: str
    events: int


@dataclass(frozen=True)
class ContainerDecision:
    """A restart, escalation or acknowledgement aegis recorded."""

    timestamp: datetime
    event_type: EventType
    container: str
    host: str
    reason: str


@dataclass(frozen=True)
class OpenEscalation:
    """An escalation neither recovered nor acknowledged (yet)."""

    container: str
    host: str
    since: datetime
    reason: str


@dataclass(frozen=True)
class Flapping:
    """A container restarted more than once in a window."""

    container: str
    host: str
    restarts: int


@dataclass(frozen=True)
class CriticalEvent:
    timestamp: datetime
    event_type: str
    host: str
    summary: str


@dataclass(frozen=True)
class ContainerActions:
    """How many restarts or escalations (``event_type``) one container had."""

    container: str
    event_type: EventType
    actions: int


@dataclass(frozen=True)
class DailyActions:
    """Restarts or escalations (``event_type``) of one day, in a time zone."""

    day: date
    event_type: EventType
    events: int


@dataclass(frozen=True)
class ProbeOutput:
    """What a container's health probe printed, as an event recorded it."""

    timestamp: datetime
    event_type: str  # any event may carry a probe's output, an operator's own too
    probe_output: str
    probe_exit_code: str | None
