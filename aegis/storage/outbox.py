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
from aegis.storage.db import Json, Queries
from aegis.storage.events import Importance
from aegis.storage.rows import PrunedBatch, as_row, as_rows, maybe_row


class Channel(StrEnum):
    """Where a notification goes."""

    # Escalations and critical events.
    ALERTS = "alerts"
    # The morning status and the evening digest.
    JOURNAL = "journal"
    # The second route: an escalation nobody acknowledged within AEGIS_ESCALATE_AFTER.
    ESCALATION = "escalation"


class OutboxStatus(StrEnum):
    """Where a queued message stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    # Refused for good by a destination.
    FAILED = "failed"
    # No destination configured, or given up.
    UNDELIVERABLE = "undeliverable"


UNFINISHED = (OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE)


class IncidentStep(StrEnum):
    """The steps of a container's incident: the lines of its log
    (``containers.incident_log``) and what its living message says of it (its colour).
    Supervision takes them; the message shows them."""

    # Strike 1.
    STRUCK = "struck"
    # A dependant's incident, folded into its parent's.
    FOLDED = "folded"
    # Strike 2.
    RESTARTED = "restarted"
    RESTART_FAILED = "restart_failed"
    # The healing ladder's rung above a restart: recreated, or its compose project restarted.
    RECREATED = "recreated"
    STACK_RESTARTED = "stack_restarted"
    # Strike 3.
    ESCALATED = "escalated"
    # By ``aegis ack``.
    ACKNOWLEDGED = "acknowledged"
    RECOVERED = "recovered"
    # No longer supervised.
    RESET = "reset"
    # A dependant folded into this incident.
    AFFECTED = "affected"


@dataclass(frozen=True)
class SentOffline:
    """A message sent straight to its channel's destinations while the database was
    unreachable (aegis/notify/offline.py): written back as delivered, never sent again."""

    at: datetime
    sent_by: str
    # Target id -> how it took the message, as a row keeps it (``target_results``); a
    # destination missing here (a timeout, a 5xx) is left to the sender.
    results: dict[str, str] = field(default_factory=dict)
    # Target id -> the message it holds: a living message's, adopted by its thread.
    messages: dict[str, str] = field(default_factory=dict)
    # Every destination of the channel took it or refused it for good.
    complete: bool = True

    def __post_init__(self) -> None:
        """The time from its text too (read back from the spool)."""
        if isinstance(self.at, str):
            object.__setattr__(self, "at", datetime.fromisoformat(self.at))


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
    # Sent already, while the database was unreachable.
    sent: SentOffline | None = None

    def __post_init__(self) -> None:
        """The enums from their text too (a notification read back from the spool)."""
        if self.channel not in tuple(Channel):
            raise ValueError(f"channel {self.channel!r} is not one of {', '.join(Channel)}")
        object.__setattr__(self, "channel", Channel(self.channel))
        object.__setattr__(self, "importance", Importance(self.importance))
        if self.state is not None:
            object.__setattr__(self, "state", IncidentStep(self.state))
        if isinstance(self.sent, dict):
            object.__setattr__(self, "sent", SentOffline(**self.sent))

    @property
    def pages(self) -> bool:
        """Whether it is sent at once even while the database is unreachable: an alert of
        high importance or above that is not only an edit of a message already out."""
        return (self.sent is None and not self.edit_only
                and self.importance.rank >= Importance.HIGH.rank)


def fingerprint(notification: Notification) -> str | None:
    """The key under which identical repeats are summarised: critical alerts keyed by
    their event only. A caller-chosen dedup key (an escalation per incident) is never
    summarised away, and neither is the journal."""
    if (notification.channel != Channel.ALERTS
            or notification.importance != Importance.CRITICAL
            or notification.dedup_key is not None):
        return None
    text = "\x1f".join((notification.channel, notification.title, notification.body))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def enqueue(tx: Queries, notification: Notification, *, host: str,
            event_uid: str | None) -> bool:
    """Queue ``notification`` in ``tx``; False when its dedup key was queued before. One
    sent while the database was unreachable is recorded as its post went: delivered (or
    left to the sender for the destinations that did not take it), its thread holding
    the messages posted."""
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
    if row is not None and notification.sent is not None:
        _record_sent(Outbox(tx), int(row["id"]), notification, notification.sent)
    return row is not None


def _record_sent(outbox: Outbox, row_id: int, notification: Notification,
                 sent: SentOffline) -> None:
    status = OutboxStatus.DELIVERED if sent.complete else OutboxStatus.PENDING
    if notification.thread is not None:
        # the thread's older edits still waiting say less than the message now out
        outbox.supersede_edits(notification.thread)
    outbox.record(DeliveryRecord(
        ids=(row_id,), status=status, at=sent.at, next_attempt_at=sent.at, attempted=True,
        sent_by=sent.sent_by, target_results=dict(sent.results), thread=notification.thread,
        thread_messages={target: message_id for target, message_id in sent.messages.items()
                         if message_id}))


@dataclass(frozen=True)
class OutboxRow:
    """One queued message as the sender and ``aegis outbox`` see it."""

    id: int
    channel: Channel
    dedup_key: str
    host: str
    title: str
    body: str
    importance: Importance
    fields: dict[str, str]
    status: OutboxStatus
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
    state: IncidentStep | None = None
    edit_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return to_json(self, only=("id", "channel", "status", "importance", "title", "host",
                                   "attempts", "created_at", "next_attempt_at", "last_error",
                                   "dedup_key"))


@dataclass(frozen=True)
class ChannelHead:
    """A channel's oldest pending row: what says when the channel has work again."""

    channel: Channel
    id: int
    created_at: datetime
    next_attempt_at: datetime
    claimed_until: datetime | None
    groupable: bool


@dataclass(frozen=True)
class LastPost:
    """The latest post of a fingerprint, and how many repeats were merged into it."""

    id: int
    fingerprint: str
    delivered_at: datetime
    repeats: int


@dataclass(frozen=True)
class GivenUp:
    """A message given up: too old to deliver."""

    id: int
    title: str
    attempts: int
    last_error: str


@dataclass(frozen=True)
class DeliveryRecord:
    """What one post did, recorded on every row it carried (the head first) and, for a
    row of a thread, the message each destination holds for the thread afterwards."""

    ids: tuple[int, ...]
    status: OutboxStatus
    # When the answer came: the rows' delivered_at (if delivered), a thread message's time.
    at: datetime
    next_attempt_at: datetime
    # Whether a destination was asked, not only held back by a rate limit.
    attempted: bool
    sent_by: str
    last_error: str | None = None
    target_results: dict[str, str] = field(default_factory=dict)
    thread: str | None = None
    # Target id -> message id.
    thread_messages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelFailures:
    """Messages of one channel that failed for good in a window, and the latest error."""

    channel: Channel
    failures: int
    last_error: str


@dataclass(frozen=True)
class StatusCount:
    """Messages of one channel in one status, and the age of the oldest."""

    channel: Channel
    status: OutboxStatus
    messages: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class ChannelHealth:
    """``aegis doctor``'s view of a channel: the last delivery, what waits, and how the
    latest finished message ended."""

    last_delivered_at: datetime | None
    pending: int
    oldest_pending_at: datetime | None
    latest_status: OutboxStatus | None
    latest_error: str | None
    latest_at: datetime | None


LAST_ERROR_MAX = 2000


class Outbox:
    """The named queries of the ``outbox`` and ``outbox_messages`` tables, on the pool or
    inside a transaction."""

    def __init__(self, db: Queries) -> None:
        self.db = db

    # --- the sender's ---

    def channel_head(self, channel: Channel, limit: int) -> list[OutboxRow]:
        """The channel's oldest pending rows, locked for this transaction."""
        return as_rows(OutboxRow, self.db.fetch_all("outbox_channel_head", channel=channel,
                                                    limit=limit))

    def first_pending_id(self, channel: Channel) -> int | None:
        row = self.db.fetch_one("outbox_first_pending", channel=channel)
        return None if row is None or row["id"] is None else int(row["id"])

    def lock_row(self, row_id: int) -> OutboxRow | None:
        return maybe_row(OutboxRow, self.db.fetch_one("outbox_lock_row", id=row_id))

    def claim(self, ids: Sequence[int], instance: str, until: datetime) -> None:
        self.db.execute("outbox_claim", ids=list(ids), instance=instance, until=until)

    def record(self, delivery: DeliveryRecord) -> None:
        """The outcome of one post on its rows, and the messages kept for its thread; run
        it inside a transaction, so both are written or neither."""
        self.db.execute(
            "outbox_record", ids=list(delivery.ids), head_id=delivery.ids[0],
            status=delivery.status, attempted=1 if delivery.attempted else 0,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error[:LAST_ERROR_MAX] if delivery.last_error else None,
            delivered_at=delivery.at if delivery.status == OutboxStatus.DELIVERED else None,
            target_results=Json(delivery.target_results), instance=delivery.sent_by)
        if delivery.thread is not None:
            for target, message_id in delivery.thread_messages.items():
                self.keep_thread_message(delivery.thread, target, message_id, delivery.at)

    def merge_repeat(self, row_id: int, into: int, now: datetime, instance: str) -> None:
        self.db.execute("outbox_merge_repeat", id=row_id, into=into, now=now,
                        instance=instance)

    def supersede_edits(self, thread: str) -> list[int]:
        """Mark the thread's pending edits older than its newest row delivered with it
        (each row carries the whole message); the ids so marked. Rows being posted are
        left alone."""
        return [int(row["id"]) for row in self.db.fetch_all("outbox_supersede_edits",
                                                            thread=thread)]

    def last_posts(self, fingerprints: Sequence[str]) -> dict[str, LastPost]:
        """The latest post of each fingerprint that has one, by fingerprint."""
        posts = as_rows(LastPost, self.db.fetch_all("outbox_last_posts",
                                                    fingerprints=list(fingerprints)))
        return {post.fingerprint: post for post in posts}

    def mark_undeliverable(self, channel: Channel, reason: str, now: datetime) -> list[int]:
        """Close the channel's pending rows (no destination): the ids closed."""
        rows = self.db.fetch_all("outbox_mark_undeliverable", channel=channel, reason=reason,
                                 now=now)
        return [int(row["id"]) for row in rows]

    def give_up(self, channel: Channel, cutoff: datetime, now: datetime) -> list[GivenUp]:
        """Fail the channel's pending rows queued before ``cutoff``: those given up."""
        return as_rows(GivenUp, self.db.fetch_all("outbox_give_up", channel=channel,
                                                  cutoff=cutoff, now=now))

    def heads(self) -> list[ChannelHead]:
        """Each channel's oldest pending row: when the channel has work again."""
        return as_rows(ChannelHead, self.db.fetch_all("outbox_heads"))

    def get(self, row_id: int) -> OutboxRow | None:
        return maybe_row(OutboxRow, self.db.fetch_one("outbox_get", id=row_id))

    def by_dedup_key(self, dedup_key: str) -> OutboxRow | None:
        return maybe_row(OutboxRow, self.db.fetch_one("outbox_by_dedup_key",
                                                      dedup_key=dedup_key))

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

    def listing(self, statuses: Sequence[OutboxStatus], limit: int) -> list[OutboxRow]:
        """``aegis outbox``: rows of these statuses, oldest first."""
        return as_rows(OutboxRow, self.db.fetch_all("outbox_list", statuses=list(statuses),
                                                    limit=limit))

    def delivery_failures(self, start: datetime, end: datetime,
                          host: str | None = None) -> list[ChannelFailures]:
        """Per channel, messages of [start, end) that failed for good, and the last error."""
        return as_rows(ChannelFailures, self.db.fetch_all(
            "digest_delivery_failures", start=start, end=end, host=host))

    def counts_by_status(self, since: datetime) -> list[StatusCount]:
        """Messages by channel and status: every one not delivered, and those delivered
        since ``since``."""
        return as_rows(StatusCount, self.db.fetch_all("metrics_outbox", since=since))

    def failed_attempts(self, since: datetime) -> dict[Channel, int]:
        """Failed delivery attempts of the messages created since ``since``, by channel."""
        return {Channel(row["channel"]): int(row["failures"])
                for row in self.db.fetch_all("metrics_outbox_attempts", since=since)}

    def channel_health(self, channel: Channel) -> ChannelHealth:
        """Last delivery, pending count, oldest pending and the latest message's outcome."""
        row = self.db.fetch_one("doctor_channel", channel=channel)
        # One row, whatever the table holds.
        assert row is not None
        return as_row(ChannelHealth, row)

    def prune(self, cutoff: datetime, from_time: datetime, batch_rows: int) -> PrunedBatch:
        """Delete one batch of finished messages created before ``cutoff`` (and the living
        messages no row of their thread refers to any more)."""
        return PrunedBatch.of(self.db.fetch_one("cleanup_outbox_batch", cutoff=cutoff,
                                                from_time=from_time, batch_rows=batch_rows))
