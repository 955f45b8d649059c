"""Episodic memory and key/value state on top of the named-query database API: the owner
of the ``episodic_memory`` and ``state`` tables (aegis/storage/sql/events.sql).

When the database is unreachable, writes go to the spool file and are replayed, in
order and exactly once (events carry a uid; state writes carry their time), as soon as
the database answers again. Other kinds of spooled records (a job run, a container
decision) are replayed by the handlers whoever builds the store hands it.

A message that pages (an escalation, an outage of the engine) cannot wait for the
database: while it is unreachable, the store hands it to its ``Pager``, which sends it
straight to the channel's destinations, and spools it marked sent, so its replay records
it as delivered instead of sending it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable, UsageError
from aegis.core.jsonable import json_safe
from aegis.core.logs import get_logger
from aegis.storage.db import Connection, Database, Json, Queries
from aegis.storage.events import (
    ContainerActions,
    ContainerDecision,
    CriticalEvent,
    DailyActions,
    Event,
    EventCount,
    EventType,
    Flapping,
    Importance,
    OpenEscalation,
    ProbeOutput,
    make_event,
    validate_importance,
)
from aegis.storage.outbox import Notification, enqueue
from aegis.storage.rows import PrunedBatch, as_rows
from aegis.storage.spool import BadRecord, SetAside, Spool

_LOG_METHOD = {Importance.LOW: "info", Importance.MEDIUM: "info",
               Importance.HIGH: "warning", Importance.CRITICAL: "error"}
_RESERVED_LOG_KEYS = {"event", "level", "timestamp", "summary", "importance", "logger"}
MAX_STATE_KEY_CHARS = 200

Replay = Callable[[Connection, dict[str, Any]], None]  # writes one spooled record in a tx
SpoolRecord = dict[str, Any] | Callable[[], dict[str, Any]]


class Pager(Protocol):
    """Sends a message straight to its channel's destinations, without the database
    (aegis/notify/offline.py builds the one a daemon uses)."""

    def page(self, notification: Notification, host: str) -> Notification:
        """``notification`` sent, with ``sent`` saying how; unchanged when no destination
        took it. Never raises."""
        ...


class Store:
    """Events and state for one host, with the spool as the fallback when Postgres is down.
    ``replays`` maps a spool record kind (besides ``event`` and ``state``) to the handler
    that writes it back."""

    # what whoever builds the store hands it; the clock, the replays and the pager optional
    def __init__(self, db: Database, spool: Spool, host: str,  # noqa: PLR0913
                 clock: Callable[[], datetime] = utcnow,
                 replays: Mapping[str, Replay] | None = None,
                 pager: Pager | None = None) -> None:
        """``pager``: what sends a message that pages while the database is unreachable
        (None: it waits in the spool like the rest)."""
        self.db = db
        self.spool = spool
        self.host = host
        self.clock = clock
        self.replays: dict[str, Replay] = dict(replays or {})
        self.pager = pager
        self.log = get_logger()
        self._lock = threading.Lock()

    # --- events ---

    # an event's fields, by keyword, as every recorder (a job too) names them
    def record_event(self, event_type: str, summary: str, *,  # noqa: PLR0913
                     importance: str = "low",
                     details: dict[str, Any] | None = None, source: str = "aegis",
                     timestamp: datetime | None = None,
                     notify: Notification | None = None) -> Event:
        """Record an event (and, with ``notify``, queue its notification in the same
        transaction); spooled when the database is unreachable."""
        event = self.new_event(event_type, summary, importance=importance, details=details,
                               source=source, timestamp=timestamp)
        self.log_event(event)
        self.write(lambda tx: insert_event(tx, event, notify),
                   lambda: event_record(event, self.page_offline(notify)))
        return event

    # an event's fields, by keyword
    def new_event(self, event_type: str, summary: str, *,  # noqa: PLR0913
                  importance: str = "low",
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

    def page_offline(self, notification: Notification | None) -> Notification | None:
        """``notification`` sent at once and marked sent when it pages (the database being
        unreachable, see ``Notification.pages``); otherwise as it was, to wait in the
        spool."""
        if notification is None or self.pager is None or not notification.pages:
            return notification
        return self.pager.page(notification, self.host)

    def write(self, action: Callable[[Connection], object], spool_record: SpoolRecord) -> bool:
        """Run ``action`` in a transaction after replaying the spool; spool the record (or
        what a callable makes, only then) if the database is unreachable. Returns True
        when written to the database."""
        with self._lock:
            try:
                self._replay_locked()
                with self.db.transaction() as tx:
                    action(tx)
                return True
            except DatabaseUnavailable as exc:
                record = spool_record() if callable(spool_record) else spool_record
                self.spool.append(record)
                self.log.warning("store_spooled", kind=record.get("kind"), error=str(exc))
                return False

    # the filters of `aegis events`, by keyword, each optional
    def query_events(self, *, since: datetime,  # noqa: PLR0913
                     event_types: Sequence[str] | None = None,
                     min_importance: str | None = None, container: str | None = None,
                     before: tuple[datetime, int] | None = None,
                     limit: int = 100) -> list[Event]:
        """Events since ``since``, newest first: of these types, at or above an
        importance, about one container, older than ``before`` (the (timestamp, id) of
        the last event of the previous page)."""
        if min_importance is not None:
            validate_importance(min_importance)
        before_time, before_id = before or (None, None)
        rows = self.db.fetch_all("query_events", since=since,
                                 types=list(event_types) if event_types else None,
                                 min_importance=min_importance, container=container,
                                 before_time=before_time, before_id=before_id, limit=limit)
        return [Event.from_row(row) for row in rows]

    # --- state ---

    def set_state(self, key: str, value: Any) -> None:
        if not key or len(key) > MAX_STATE_KEY_CHARS:
            raise UsageError(f"a state key is 1 to {MAX_STATE_KEY_CHARS} characters")
        value = json_safe(value)
        updated_at = self.clock()
        self.write(lambda tx: tx.execute("set_state", key=key, value=Json(value),
                                         updated_at=updated_at),
                   {"kind": "state", "key": key, "value": value,
                    "updated_at": updated_at.isoformat()})

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.fetch_one("get_state", key=key)
        return default if row is None else row["value"]

    # --- what the digest, the morning status, /metrics and retention read ---

    def counts_by_type(self, start: datetime, end: datetime,
                       exclude_types: Sequence[str] = (), host: str | None = None
                       ) -> list[EventCount]:
        """Events of [start, end) of each importance and type, of ``host`` (None: all)."""
        return as_rows(EventCount, self.db.fetch_all(
            "digest_event_counts", start=start, end=end, exclude_types=list(exclude_types),
            host=host))

    def counts_of(self, types: Sequence[str], start: datetime, end: datetime,
                  host: str | None = None) -> dict[str, int]:
        """event type -> events of these types in [start, end)."""
        return {row["event_type"]: int(row["events"]) for row in self.db.fetch_all(
            "digest_decision_counts", types=list(types), start=start, end=end, host=host)}

    def decisions(self, types: Sequence[str], start: datetime, end: datetime,
                  limit: int, host: str | None = None) -> list[ContainerDecision]:
        """The first container decisions of [start, end)."""
        return as_rows(ContainerDecision, self.db.fetch_all(
            "digest_decisions", types=list(types), start=start, end=end, limit=limit,
            host=host))

    def open_escalations(self, as_of: datetime, limit: int,
                         host: str | None = None) -> list[OpenEscalation]:
        """Escalations not recovered or acknowledged at ``as_of``."""
        return as_rows(OpenEscalation, self.db.fetch_all(
            "digest_open_escalations", as_of=as_of, limit=limit, host=host))

    def flapping(self, start: datetime, end: datetime, limit: int,
                 host: str | None = None) -> list[Flapping]:
        """Containers restarted more than once in [start, end)."""
        return as_rows(Flapping, self.db.fetch_all("digest_flapping", start=start, end=end,
                                                   limit=limit, host=host))

    def critical_events(self, start: datetime, end: datetime, exclude_types: Sequence[str],
                        limit: int, host: str | None = None) -> list[CriticalEvent]:
        return as_rows(CriticalEvent, self.db.fetch_all(
            "digest_critical_events", start=start, end=end, exclude_types=list(exclude_types),
            limit=limit, host=host))

    def last_escalations(self) -> dict[str, datetime]:
        """host -> the time of its latest escalation."""
        return {row["host"]: row["last_escalation_at"]
                for row in self.db.fetch_all("fleet_last_escalations")}

    def troubled_containers(self, start: datetime, end: datetime) -> dict[str, int]:
        """host -> how many of its containers had trouble in [start, end)."""
        return {row["host"]: int(row["containers"]) for row in self.db.fetch_all(
            "status_troubled_containers", start=start, end=end)}

    def counts_by_importance(self, since: datetime) -> dict[Importance, int]:
        """importance -> events since ``since``."""
        return {Importance(row["importance"]): int(row["events"])
                for row in self.db.fetch_all("metrics_events", since=since)}

    def container_actions(self, host: str) -> list[ContainerActions]:
        """Restarts and escalations recorded by ``host``, per container and event type."""
        return as_rows(ContainerActions,
                       self.db.fetch_all("metrics_container_actions", host=host))

    # --- what the status page reads ---

    def daily_actions(self, start: datetime, end: datetime, zone: str) -> list[DailyActions]:
        """Restarts and escalations of each day of [start, end), days in the time zone
        ``zone``."""
        return as_rows(DailyActions, self.db.fetch_all("page_daily_actions", start=start,
                                                       end=end, zone=zone))

    def container_events(self, host: str, container: str, limit: int) -> list[Event]:
        """The latest events about one container, newest first."""
        return [Event.from_row(row) for row in self.db.fetch_all(
            "page_container_events", host=host, container=container, limit=limit)]

    def container_action_counts(self, host: str, container: str, since: datetime
                                ) -> dict[str, int]:
        """event type -> how many restarts, failed restarts and escalations one container
        had since ``since``."""
        return {row["event_type"]: int(row["events"]) for row in self.db.fetch_all(
            "page_container_actions", host=host, container=container, since=since)}

    def probe_outputs(self, host: str, container: str, limit: int) -> list[ProbeOutput]:
        """The latest health-probe outputs events recorded about one container."""
        return as_rows(ProbeOutput, self.db.fetch_all(
            "page_probe_outputs", host=host, container=container, limit=limit))

    def latest_probe_outputs(self, containers: Sequence[tuple[str, str]]
                             ) -> dict[tuple[str, str], str]:
        """(host, name) -> the latest health-probe output recorded about that container."""
        rows = self.db.fetch_all("page_latest_probe_outputs",
                                 hosts=[host for host, _ in containers],
                                 names=[name for _, name in containers])
        return {(row["host"], row["name"]): row["probe_output"] for row in rows}

    def prune_low_events(self, cutoff: datetime, from_time: datetime,
                         batch_rows: int) -> PrunedBatch:
        """Delete one batch of low events older than ``cutoff``."""
        return PrunedBatch.of(self.db.fetch_one("cleanup_low_events_batch", cutoff=cutoff,
                                                from_time=from_time, batch_rows=batch_rows))

    # --- spool ---

    def replay_spool(self) -> int:
        """Write spooled records to the database, in order; return how many were written.
        With none waiting (the spool file empty: one ``stat``) it returns at once, without
        waiting for the store's lock, which another thread's write may hold for its whole
        transaction: a strike is not held up by a check's or a job's write. A record
        appended before this call is seen and replayed first, as before."""
        if self.spool.pending() == 0:
            return 0
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
        kind = str(record.get("kind"))
        replay = self.replays.get(kind)
        if kind not in ("event", "state") and replay is None:
            raise BadRecord(f"a record of unknown kind {record.get('kind')!r}")
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
            raise BadRecord(f"a record of kind {record.get('kind')!r} that cannot be replayed "
                            f"({type(exc).__name__}: {exc})") from None

    def _report_set_aside(self, set_aside: list[SetAside]) -> None:
        """One high event for the lines a drain set aside (the store lock is held)."""
        where = self.spool.set_aside_path
        first = set_aside[0]
        more = f" and {len(set_aside) - 1} more" if len(set_aside) > 1 else ""
        event = self.new_event(
            EventType.SPOOL_RECORD_SET_ASIDE,
            f"spool line {first.line} is {first.reason}{more}: moved to {where}",
            importance=Importance.HIGH,
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
    """An event (and its notification) as a spool record."""
    record = {"kind": "event", **event.to_json(), "uid": event.uid}
    if notify is not None:
        record["notify"] = asdict(notify)
    return record


def event_from_record(record: dict[str, Any]) -> tuple[Event, Notification | None]:
    """A spooled event (see ``event_record``) and its notification."""
    notify = record.get("notify")
    return Event(event_type=record["event_type"], summary=record["summary"],
                 importance=Importance(record["importance"]), host=record["host"],
                 source=record["source"], details=record.get("details") or {},
                 timestamp=datetime.fromisoformat(record["timestamp"]),
                 uid=record["uid"]), Notification(**notify) if notify else None


def insert_event(tx: Queries, event: Event, notify: Notification | None = None) -> bool:
    """Insert ``event`` (and queue ``notify``) in ``tx``; False when its uid was already
    recorded, in which case nothing is queued either."""
    inserted = tx.fetch_one("insert_event", **event.params()) is not None
    if inserted and notify is not None:
        enqueue(tx, notify, host=event.host, event_uid=event.uid)
    return inserted
