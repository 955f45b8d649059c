"""The outbox: notifications as durable rows, and the owner of the ``outbox`` table
(aegis/storage/sql/outbox.sql).

A notification is queued in the same transaction as the event that caused it
(``Store.record_event(..., notify=Notification(...))``), which is why the outbox lives
with the event store; the sender (aegis/notify/sender.py) claims, posts and records the
rows through ``Outbox``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from aegis.core.jsonable import to_json
from aegis.storage.db import Json, Queries, Row
from aegis.storage.events import Importance


class Channel(StrEnum):
    ALERTS = "alerts"  # escalations and critical events
    JOURNAL = "journal"  # the morning status and the evening digest


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # refused for good by a destination
    UNDELIVERABLE = "undeliverable"  # no destination configured, or given up


UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE)


class IncidentStep(StrEnum):
    """The steps of a container's incident: the lines of its log
    (``containers.incident_log``) and what its living message says of it (its colour).
    Supervision takes them; the message shows them."""

    STRUCK = "struck"  # strike 1
    FOLDED = "folded"  # a dependant's incident, folded into its parent's
    RESTARTED = "restarted"  # strike 2
    RESTART_FAILED = "restart_failed"
    ESCALATED = "escalated"  # strike 3
    ACKNOWLEDGED = "acknowledged"  # aegis ack
    RECOVERED = "recovered"
    RESET = "reset"  # no longer supervised
    AFFECTED = "affected"  # a dependant folded into this incident


@dataclass(frozen=True)
class Notification:
    channel: Channel
    title: str
    body: str = ""
    importance: Importance = Importance.MEDIUM
    fields: dict[str, str] = field(default_factory=dict)
    # Messages with the same key are sent once; by default, once per causing event.
    dedup_key: str | None = None
    # False: always posted on its own, never merged with neighbouring alerts.
    groupable: bool = True
    # The living message this one creates or edits (rows of one thread: one message).
    thread: str | None = None
    # Where its incident stands (the step its message says): its colour.
    state: IncidentStep | None = None
    # An update that destinations which cannot edit a message (Apprise) do not get.
    edit_only: bool = False

    def __post_init__(self) -> None:
        """The enums from their text too (a notification read back from the spool)."""
        if self.channel not in tuple(Channel):
            raise ValueError(f"channel {self.channel!r} is not one of {', '.join(Channel)}")
        object.__setattr__(self, "channel", Channel(self.channel))
        object.__setattr__(self, "importance", Importance(self.importance))
        if self.state is not None:
            object.__setattr__(self, "state", IncidentStep(self.state))


def fingerprint(notification: Notification) -> str | None:
    """The key under which identical repeats are summarised: critical alerts keyed by
    their event only. A caller-chosen dedup key (an escalation per incident) is never
    summarised away, and neither is the journal."""
    if (notification.channel != Channel.ALERTS or notification.importance != "critical"
            or notification.dedup_key is not None):
        return None
    text = "\x1f".join((notification.channel, notification.title, notification.body))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def enqueue(tx: Queries, notification: Notification, *, host: str,
            event_uid: str | None) -> bool:
    """Queue ``notification`` in ``tx``; False when its dedup key was queued before."""
    dedup_key = notification.dedup_key or f"event:{event_uid}"
    row = tx.fetch_one("enqueue_notification", channel=notification.channel,
                       dedup_key=dedup_key, host=host, event_uid=event_uid,
                       title=notification.title, body=notification.body,
                       importance=notification.importance,
                       fields=Json({str(k): str(v) for k, v in notification.fields.items()}),
                       fingerprint=fingerprint(notification),
                       groupable=notification.groupable and notification.thread is None,
                       thread=notification.thread, state=notification.state,
                       edit_only=notification.edit_only)
    return row is not None


@dataclass(frozen=True)
class OutboxRow:
    """One queued message as the sender and ``aegis outbox`` see it."""

    id: int
    channel: str
    dedup_key: str
    host: str
    title: str
    body: str
    importance: str
    fields: dict[str, str]
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    delivered_at: datetime | None = None
    fingerprint: str | None = None
    groupable: bool = True
    claimed_by: str | None = None
    claimed_until: datetime | None = None
    target_results: dict[str, str] = field(default_factory=dict)
    merged_into: int | None = None
    thread: str | None = None
    state: str | None = None
    edit_only: bool = False

    @classmethod
    def from_row(cls, row: Row) -> OutboxRow:
        return cls(**{**{name: row[name] for name in cls.__dataclass_fields__},
                      "fields": dict(row["fields"] or {}),
                      "target_results": dict(row["target_results"] or {})})

    def to_json(self) -> dict[str, Any]:
        return to_json(self, only=("id", "channel", "status", "importance", "title", "host",
                                   "attempts", "created_at", "next_attempt_at", "last_error",
                                   "dedup_key"))


class Outbox:
    """The named queries of the ``outbox`` table, on the pool or inside a transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    # --- the sender's ---

    def channel_head(self, channel: str, limit: int) -> list[OutboxRow]:
        """The channel's oldest pending rows, locked for this transaction."""
        return [OutboxRow.from_row(row) for row in
                self.db.fetch_all("outbox_channel_head", channel=channel, limit=limit)]

    def first_pending_id(self, channel: str) -> int | None:
        row = self.db.fetch_one("outbox_first_pending", channel=channel)
        return None if row is None or row["id"] is None else int(row["id"])

    def lock_row(self, row_id: int) -> OutboxRow | None:
        row = self.db.fetch_one("outbox_lock_row", id=row_id)
        return None if row is None else OutboxRow.from_row(row)

    def claim(self, ids: Sequence[int], instance: str, until: datetime) -> None:
        self.db.execute("outbox_claim", ids=list(ids), instance=instance, until=until)

    def record(self, **params: Any) -> None:
        """The outcome of one post of rows ``ids`` (see outbox.sql's outbox_record)."""
        self.db.execute("outbox_record", **params)

    def merge_repeat(self, row_id: int, into: int, now: datetime, instance: str) -> None:
        self.db.execute("outbox_merge_repeat", id=row_id, into=into, now=now,
                        instance=instance)

    def last_posts(self, fingerprints: Sequence[str]) -> list[Row]:
        """The latest post of each fingerprint: id, fingerprint, delivered_at, repeats."""
        return self.db.fetch_all("outbox_last_posts", fingerprints=list(fingerprints))

    def mark_undeliverable(self, channel: str, reason: str, now: datetime) -> list[Row]:
        return self.db.fetch_all("outbox_mark_undeliverable", channel=channel, reason=reason,
                                 now=now)

    def give_up(self, channel: str, cutoff: datetime, now: datetime) -> list[Row]:
        return self.db.fetch_all("outbox_give_up", channel=channel, cutoff=cutoff, now=now)

    def heads(self) -> list[Row]:
        """Each channel's oldest pending row: when the channel has work again."""
        return self.db.fetch_all("outbox_heads")

    def get(self, row_id: int) -> OutboxRow | None:
        row = self.db.fetch_one("outbox_get", id=row_id)
        return None if row is None else OutboxRow.from_row(row)

    def by_dedup_key(self, dedup_key: str) -> OutboxRow | None:
        row = self.db.fetch_one("outbox_by_dedup_key", dedup_key=dedup_key)
        return None if row is None else OutboxRow.from_row(row)

    def thread_message(self, thread: str, target: str) -> str | None:
        """The id of the message ``target`` holds for ``thread``, if it posted one."""
        row = self.db.fetch_one("outbox_thread_message", thread=thread, target=target)
        return None if row is None else str(row["message_id"])

    def keep_thread_message(self, thread: str, target: str, message_id: str,
                            now: datetime) -> None:
        """Remember the message ``target`` holds for ``thread`` (posted, or edited)."""
        self.db.execute("outbox_keep_thread_message", thread=thread, target=target,
                        message_id=message_id, now=now)

    # --- operators, reports, metrics, doctor, retention ---

    def listing(self, statuses: Sequence[str], limit: int) -> list[OutboxRow]:
        """``aegis outbox``: rows of these statuses, oldest first."""
        return [OutboxRow.from_row(row) for row in
                self.db.fetch_all("outbox_list", statuses=list(statuses), limit=limit)]

    def delivery_failures(self, start: datetime, end: datetime,
                          host: str | None = None) -> list[Row]:
        """Per channel, messages of [start, end) that failed for good, and the last error."""
        return self.db.fetch_all("digest_delivery_failures", start=start, end=end, host=host)

    def counts_by_status(self, since: datetime) -> list[Row]:
        return self.db.fetch_all("metrics_outbox", since=since)

    def failed_attempts(self, since: datetime) -> list[Row]:
        return self.db.fetch_all("metrics_outbox_attempts", since=since)

    def channel_health(self, channel: str) -> Row:
        """Last delivery, pending count, oldest pending and the latest message's outcome."""
        row = self.db.fetch_one("doctor_channel", channel=channel)
        assert row is not None  # one row whatever the table holds
        return row

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> Row | None:
        """Delete one batch of finished messages created before ``cutoff`` (and the living
        messages no row of their thread refers to any more)."""
        return self.db.fetch_one("cleanup_outbox_batch", cutoff=cutoff, from_time=from_time,
                                 batch_rows=batch_rows)
