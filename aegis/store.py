"""Episodic memory and key/value state on top of the named-query database API.

When the database is unreachable, writes go to the spool file and are replayed, in
order and exactly once (events carry a uid; state writes carry their time), as soon as
the database answers again.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from aegis.clock import utcnow
from aegis.db import Cursorish, Database, Json
from aegis.errors import DatabaseUnavailable, UsageError
from aegis.logs import get_logger
from aegis.outbox import Notification, enqueue
from aegis.spool import BadRecord, SetAside, Spool

IMPORTANCE = ("low", "medium", "high", "critical")
_LOG_METHOD = {"low": "info", "medium": "info", "high": "warning", "critical": "error"}
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_RESERVED_LOG_KEYS = {"event", "level", "timestamp", "summary", "importance", "logger"}
MAX_SUMMARY_CHARS = 4000


@dataclass(frozen=True)
class Event:
    event_type: str
    summary: str
    importance: str
    host: str
    source: str
    timestamp: datetime
    details: dict[str, Any] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp.isoformat(),
            "event_type": self.event_type,
            "summary": self.summary,
            "importance": self.importance,
            "host": self.host,
            "source": self.source,
            "details": self.details,
        }

    def params(self) -> dict[str, Any]:
        return {"uid": self.uid, "timestamp": self.timestamp, "event_type": self.event_type,
                "summary": self.summary, "details": Json(self.details),
                "importance": self.importance, "host": self.host, "source": self.source}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(event_type=row["event_type"], summary=row["summary"],
                   importance=row["importance"], host=row["host"], source=row["source"],
                   timestamp=row["timestamp"], details=row["details"] or {},
                   uid=str(row["uid"]), id=row["id"])


def validate_importance(importance: str) -> str:
    if importance not in IMPORTANCE:
        raise UsageError(f"importance {importance!r} is not one of {', '.join(IMPORTANCE)}")
    return importance


def make_event(event_type: str, summary: str, *, importance: str, host: str, source: str,
               details: dict[str, Any] | None, timestamp: datetime) -> Event:
    """A validated event with JSON-safe details."""
    if not _EVENT_TYPE.match(event_type):
        raise UsageError(f"event type {event_type!r} is not snake_case (a-z, 0-9, _)")
    validate_importance(importance)
    if len(summary) > MAX_SUMMARY_CHARS:
        summary = summary[: MAX_SUMMARY_CHARS - 1] + "…"
    safe_details = json.loads(json.dumps(details or {}, default=str))
    return Event(event_type=event_type, summary=summary, importance=importance, host=host,
                 source=source, timestamp=timestamp, details=safe_details)


class Store:
    """Events and state for one host, with the spool as the fallback when Postgres is down."""

    def __init__(self, db: Database, spool: Spool, host: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.spool = spool
        self.host = host
        self.clock = clock
        self.log = get_logger()
        self._lock = threading.Lock()

    # --- events ---

    def record_event(self, event_type: str, summary: str, *, importance: str = "low",
                     details: dict[str, Any] | None = None, source: str = "aegis",
                     timestamp: datetime | None = None,
                     notify: Notification | None = None) -> Event:
        """Record an event (and, with ``notify``, queue its notification in the same
        transaction); spooled when the database is unreachable."""
        event = self.new_event(event_type, summary, importance=importance, details=details,
                               source=source, timestamp=timestamp)
        self.log_event(event)
        self.write(lambda tx: insert_event(tx, event, notify), event_record(event, notify))
        return event

    def new_event(self, event_type: str, summary: str, *, importance: str = "low",
                  details: dict[str, Any] | None = None, source: str = "aegis",
                  timestamp: datetime | None = None) -> Event:
        """A validated event of this host, not yet recorded (see ``insert_event``)."""
        return make_event(event_type, summary, importance=importance, host=self.host,
                          source=source, details=details, timestamp=timestamp or self.clock())

    def log_event(self, event: Event) -> None:
        """The log line of an event."""
        log_details = {k: v for k, v in event.details.items() if k not in _RESERVED_LOG_KEYS}
        getattr(self.log, _LOG_METHOD[event.importance])(
            event.event_type, summary=event.summary, importance=event.importance, **log_details
        )

    def write(self, action: Callable[[Cursorish], object], spool_record: dict[str, Any]) -> bool:
        """Run ``action`` in a transaction after replaying the spool; spool the record if the
        database is unreachable. Returns True when written to the database."""
        with self._lock:
            try:
                self._replay_locked()
                with self.db.transaction() as tx:
                    action(tx)
                return True
            except DatabaseUnavailable as exc:
                self.spool.append(spool_record)
                self.log.warning("store_spooled", kind=spool_record.get("kind"), error=str(exc))
                return False

    def query_events(self, *, since: datetime, event_types: Sequence[str] | None = None,
                     min_importance: str | None = None, limit: int = 100) -> list[Event]:
        if min_importance is not None:
            validate_importance(min_importance)
        rows = self.db.fetch_all("query_events", since=since,
                                 types=list(event_types) if event_types else None,
                                 min_importance=min_importance, limit=limit)
        return [Event.from_row(row) for row in rows]

    # --- state ---

    def set_state(self, key: str, value: Any) -> None:
        if not key or len(key) > 200:
            raise UsageError("a state key is 1 to 200 characters")
        value = json.loads(json.dumps(value, default=str))
        updated_at = self.clock()
        self.write(lambda tx: tx.execute("set_state", key=key, value=Json(value),
                                         updated_at=updated_at),
                   {"kind": "state", "key": key, "value": value,
                    "updated_at": updated_at.isoformat()})

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.fetch_one("get_state", key=key)
        return default if row is None else row["value"]

    # --- spool ---

    def replay_spool(self) -> int:
        """Write spooled records to the database, in order; return how many were written."""
        with self._lock:
            return self._replay_locked()

    def _replay_locked(self) -> int:
        if self.spool.pending() == 0:
            return 0
        set_aside: list[SetAside] = []
        replayed = self.spool.drain(self._replay_one, set_aside.append)
        if replayed:
            self.log.info("spool_replayed", records=replayed - len(set_aside))
        if set_aside:
            self._report_set_aside(set_aside)
        return replayed

    def _replay_one(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        replay = SPOOL_HANDLERS.get(str(kind))
        if kind not in ("event", "state") and replay is None:
            raise BadRecord(f"a record of unknown kind {kind!r}")
        try:
            with self.db.transaction() as tx:
                if kind == "event":
                    insert_event(tx, *event_from_record(record))
                elif kind == "state":
                    tx.execute("set_state", key=record["key"], value=Json(record["value"]),
                               updated_at=datetime.fromisoformat(record["updated_at"]))
                elif replay is not None:
                    replay(tx, record)
        except (KeyError, TypeError, ValueError) as exc:  # the record, not the database
            raise BadRecord(f"a record of kind {kind!r} that cannot be replayed "
                            f"({type(exc).__name__}: {exc})") from None

    def _report_set_aside(self, set_aside: list[SetAside]) -> None:
        """One high event for the lines a drain set aside (the store lock is held)."""
        where = self.spool.set_aside_path
        first = set_aside[0]
        more = f" and {len(set_aside) - 1} more" if len(set_aside) > 1 else ""
        event = self.new_event(
            "spool_record_set_aside",
            f"spool line {first.line} is {first.reason}{more}: moved to {where}",
            importance="high",
            details={"file": str(where), "lines": [
                {"line": s.line, "reason": s.reason} for s in set_aside[:20]],
                "count": len(set_aside)})
        self.log_event(event)
        try:
            with self.db.transaction() as tx:
                insert_event(tx, event)
        except DatabaseUnavailable:
            self.spool.append(event_record(event))


def event_record(event: Event, notify: Notification | None = None) -> dict[str, Any]:
    """An event as a spool record."""
    record = {"kind": "event", **event.to_json(), "uid": event.uid}
    if notify is not None:
        record["notify"] = asdict(notify)
    return record


def event_from_record(record: dict[str, Any]) -> tuple[Event, Notification | None]:
    """A spooled event (see ``event_record``) and its notification."""
    notify = record.get("notify")
    return Event(event_type=record["event_type"], summary=record["summary"],
                 importance=record["importance"], host=record["host"],
                 source=record["source"], details=record.get("details") or {},
                 timestamp=datetime.fromisoformat(record["timestamp"]),
                 uid=record["uid"]), Notification(**notify) if notify else None


def insert_event(tx: Cursorish, event: Event, notify: Notification | None = None) -> bool:
    """Insert ``event`` (and queue ``notify``) in ``tx``; False when its uid was already
    recorded, in which case nothing is queued either."""
    inserted = tx.fetch_one("insert_event", **event.params()) is not None
    if inserted and notify is not None:
        enqueue(tx, notify, host=event.host, event_uid=event.uid)
    return inserted


# Other modules register how to replay their own spooled record kinds here.
SPOOL_HANDLERS: dict[str, Callable[[Cursorish, dict[str, Any]], None]] = {}
