"""Notifications as durable outbox rows.

A notification is queued in the same transaction as the event that caused it
(``Store.record_event(..., notify=Notification(...))``); the sender (aegis.sender)
delivers the rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aegis.db import Cursorish, Json

CHANNELS = ("alerts", "journal")
STATUSES = ("pending", "delivered", "failed", "undeliverable")


@dataclass(frozen=True)
class Notification:
    channel: str  # alerts | journal
    title: str
    body: str = ""
    importance: str = "medium"
    fields: dict[str, str] = field(default_factory=dict)
    # Messages with the same key are sent once; by default, once per causing event.
    dedup_key: str | None = None
    # False: always posted on its own, never merged with neighbouring alerts.
    groupable: bool = True

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel {self.channel!r} is not one of {', '.join(CHANNELS)}")


def fingerprint(notification: Notification) -> str | None:
    """The key under which identical repeats are summarised: critical alerts keyed by
    their event only. A caller-chosen dedup key (an escalation per incident) is never
    summarised away, and neither is the journal."""
    if (notification.channel != "alerts" or notification.importance != "critical"
            or notification.dedup_key is not None):
        return None
    text = "\x1f".join((notification.channel, notification.title, notification.body))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def enqueue(tx: Cursorish, notification: Notification, *, host: str,
            event_uid: str | None) -> bool:
    """Queue ``notification`` in ``tx``; False when its dedup key was queued before."""
    dedup_key = notification.dedup_key or f"event:{event_uid}"
    row = tx.fetch_one("enqueue_notification", channel=notification.channel,
                       dedup_key=dedup_key, host=host, event_uid=event_uid,
                       title=notification.title, body=notification.body,
                       importance=notification.importance,
                       fields=Json({str(k): str(v) for k, v in notification.fields.items()}),
                       fingerprint=fingerprint(notification),
                       groupable=notification.groupable)
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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutboxRow:
        return cls(id=row["id"], channel=row["channel"], dedup_key=row["dedup_key"],
                   host=row["host"], title=row["title"], body=row["body"],
                   importance=row["importance"], fields=dict(row["fields"] or {}),
                   status=row["status"], attempts=row["attempts"],
                   next_attempt_at=row["next_attempt_at"], created_at=row["created_at"],
                   last_error=row["last_error"], delivered_at=row["delivered_at"],
                   fingerprint=row["fingerprint"], groupable=row["groupable"],
                   claimed_by=row["claimed_by"], claimed_until=row["claimed_until"],
                   target_results=dict(row["target_results"] or {}),
                   merged_into=row["merged_into"])

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "status": self.status,
                "importance": self.importance, "title": self.title, "host": self.host,
                "attempts": self.attempts, "created_at": self.created_at.isoformat(),
                "next_attempt_at": self.next_attempt_at.isoformat(),
                "last_error": self.last_error, "dedup_key": self.dedup_key}
