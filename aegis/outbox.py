"""Notifications as durable outbox rows.

A notification is queued in the same transaction as the event that caused it
(``Store.record_event(..., notify=Notification(...))``); the sender delivers the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aegis.db import Cursorish, Json

CHANNELS = ("alerts", "journal")


@dataclass(frozen=True)
class Notification:
    channel: str  # alerts | journal
    title: str
    body: str = ""
    importance: str = "medium"
    fields: dict[str, str] = field(default_factory=dict)
    # Messages with the same key are sent once; by default, once per causing event.
    dedup_key: str | None = None

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel {self.channel!r} is not one of {', '.join(CHANNELS)}")


def enqueue(tx: Cursorish, notification: Notification, *, host: str,
            event_uid: str | None) -> bool:
    """Queue ``notification`` in ``tx``; False when its dedup key was queued before."""
    dedup_key = notification.dedup_key or f"event:{event_uid}"
    row = tx.fetch_one("enqueue_notification", channel=notification.channel,
                       dedup_key=dedup_key, host=host, event_uid=event_uid,
                       title=notification.title, body=notification.body,
                       importance=notification.importance, fields=Json(notification.fields))
    return row is not None
