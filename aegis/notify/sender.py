"""The outbox sender: delivers queued notifications in order per channel.

    claim the channel's oldest due rows -> post them as one message -> record the outcome

A row is leased (``claimed_by``/``claimed_until``) while it is posted, and only the
channel's oldest pending row can start a claim, so two daemons never post the same row
and a channel's messages never overtake each other. Failures are recorded on the row and
retried with back-off; nothing here lets a webhook or the database stop the loop.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable
from aegis.core.logs import get_logger
from aegis.notify import threads
from aegis.notify.channels import SETUP_HINT, targets_for
from aegis.notify.messages import render
from aegis.notify.policy import (
    MAX_GROUP_ROWS,
    Batch,
    claimable,
    give_up_cutoff,
    is_repeat,
    next_attempt_at,
    next_look_at,
    plan_batch,
)
from aegis.notify.targets import Outcome, Result, Target
from aegis.storage.db import Database
from aegis.storage.events import EventType, Importance
from aegis.storage.outbox import (
    Channel,
    DeliveryRecord,
    Notification,
    Outbox,
    OutboxRow,
    OutboxStatus,
)
from aegis.storage.runtime import Runtime

OUTBOX_CHANNEL = "aegis_outbox"  # NOTIFY channel fed by the outbox insert trigger
CLAIM_LEASE_S = 60.0
POLL_S = 30.0
DB_RETRY_S = 5.0
STOP_CHECK_S = 0.5
UNDELIVERABLE_KEY = "outbox_undeliverable:"
# target_results of a destination that cannot edit, for an update of a living message
SKIPPED = "skipped: an update of a message (only destinations that edit get it)"


@dataclass
class Counts:
    """What one delivery pass did, in rows (``posts``: messages posted)."""

    delivered: int = 0
    merged: int = 0
    retried: int = 0
    failed: int = 0
    undeliverable: int = 0
    given_up: int = 0
    posts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Sender:
    def __init__(self, runtime: Runtime, *, targets: dict[str, list[Target]] | None = None,
                 instance: str | None = None, clock: Callable[[], datetime] = utcnow,
                 rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.db: Database = runtime.db
        self.outbox = Outbox(runtime.db)
        self.targets = targets if targets is not None else targets_for(runtime.settings)
        self.instance = instance or f"{runtime.settings.host}-{os.getpid()}"
        self.clock = clock
        self.rng = rng or random.Random()
        self.log = get_logger(component="outbox_sender")
        self._paused_until: dict[str, datetime] = {}
        self._unrecorded: list[DeliveryRecord] = []
        self._configured_noted: set[str] = set()

    # --- passes ---

    def deliver(self, now: datetime | None = None, *, flush: bool = True,
                channels: Iterable[Channel] = tuple(Channel)) -> Counts:
        """Post every due message of ``channels``; ``now`` fixes the clock (tests), and
        ``flush`` sends alerts without waiting for companions."""
        counts = Counts()
        self._record_unrecorded()
        for channel in channels:
            self._deliver_channel(channel, counts, now, flush)
        return counts

    def _deliver_channel(self, channel: Channel, counts: Counts, fixed_now: datetime | None,
                         flush: bool) -> None:
        now = fixed_now or self.clock()
        self._give_up(channel, now, counts)
        if not self.targets[channel]:
            self._undeliverable(channel, now, counts)
            return
        self._note_configured(channel)
        while True:
            now = fixed_now or self.clock()
            batch = self._claim(channel, now, flush)
            if not batch.rows or not self._post(batch.rows, now, counts,
                                                fixed_clock=fixed_now is not None):
                return

    def deliver_row(self, row_id: int, now: datetime | None = None) -> OutboxRow | None:
        """Post one row now, outside the channel order, with no retry (``notify test``)."""
        fixed_clock = now is not None
        now = now or self.clock()
        with self.db.transaction() as tx:
            row = Outbox(tx).lock_row(row_id)
            if row is not None:
                Outbox(tx).claim([row_id], self.instance,
                                 now + timedelta(seconds=CLAIM_LEASE_S))
        if row is not None:
            if self.targets[row.channel]:
                self._post([row], now, Counts(), final=True, fixed_clock=fixed_clock)
            else:
                self._record([row], status=OutboxStatus.UNDELIVERABLE, attempted=False, now=now,
                             last_error=f"no {row.channel} channel is configured: "
                                        f"{SETUP_HINT[row.channel]}",
                             results=row.target_results)
        return self.outbox.get(row_id)

    def sleep_s(self, now: datetime) -> float:
        """Seconds until some channel has work again (at most POLL_S)."""
        wake_at = now + timedelta(seconds=POLL_S)
        for head in self.outbox.heads():
            if not self.targets.get(head.channel):
                continue
            look_at = next_look_at(head.created_at, head.next_attempt_at, head.claimed_until,
                                   grouped=head.channel == Channel.ALERTS and head.groupable)
            wake_at = min(wake_at, look_at)
        return max(0.05, (wake_at - now).total_seconds())

    # --- claiming ---

    def _claim(self, channel: Channel, now: datetime, flush: bool) -> Batch:
        with self.db.transaction() as tx:
            outbox = Outbox(tx)
            rows = outbox.channel_head(channel, MAX_GROUP_ROWS)
            if not rows or rows[0].id != outbox.first_pending_id(channel):
                return Batch()  # another sender is claiming this channel's head right now
            batch = plan_batch(claimable(rows, now, self.instance), now, flush=flush)
            if batch.rows:
                outbox.claim([r.id for r in batch.rows], self.instance,
                             now + timedelta(seconds=CLAIM_LEASE_S))
            return batch

    # --- posting ---

    def _post(self, rows: Sequence[OutboxRow], now: datetime, counts: Counts,
              final: bool = False, fixed_clock: bool = False) -> bool:
        """Post ``rows`` as one message; True when the channel may go on to the next."""
        rows, repeats = self._summarise_repeats(rows, now, counts)
        if not rows:
            return True
        head = rows[0]
        message = render(rows, instance=self.instance, repeats=repeats)
        results = dict(head.target_results)
        outcomes: list[tuple[Target, Outcome]] = []
        attempted = False
        # Back-off and retry_after count from the answer, not from before the post (a
        # timeout takes seconds); a clock fixed by the caller stays fixed.
        def current() -> datetime:
            return now if fixed_clock else self.clock()

        kept: dict[str, str] = {}  # target -> the living message it holds for the thread
        for target in self.targets[head.channel]:
            if target.id in results:
                continue  # posted there already, or refused for good
            if head.edit_only and not target.edits:
                results[target.id] = SKIPPED  # an update of a message it could not edit
                continue
            paused_until = self._paused_until.get(target.id)
            if paused_until is not None and paused_until > current():
                outcome = Outcome(Result.RETRY, "Discord rate limit bucket is empty",
                                  retry_after_s=(paused_until - current()).total_seconds())
            else:
                attempted = True
                outcome = threads.send(self.outbox, target, head, message, kept, self.log)
                if outcome.delivered:
                    counts.posts += 1
            pause_s = outcome.pause_s or outcome.retry_after_s
            if pause_s:
                self._paused_until[target.id] = current() + timedelta(seconds=pause_s)
            if not outcome.should_retry:
                results[target.id] = (Result.DELIVERED if outcome.delivered
                                      else f"{Result.FAILED}: {outcome.reason}")
            outcomes.append((target, outcome))
        retries = [(t, o) for t, o in outcomes if o.should_retry]
        failures = [(t, o) for t, o in outcomes if o.refused]
        errors = "; ".join(f"{t.label}: {o.reason}" for t, o in retries + failures) or None
        now = current()
        if retries and not final:
            attempts = head.attempts + (1 if attempted else 0)
            after_s = [o.retry_after_s for _, o in retries if o.retry_after_s is not None]
            # a 5xx or timeout among them: back off; only rate limits: their retry_after
            retry_after_s = max(after_s) if len(after_s) == len(retries) else None
            retry_at = next_attempt_at(max(1, attempts), now, self.rng, retry_after_s)
            self._record(rows, status=OutboxStatus.PENDING, attempted=attempted, now=now,
                         last_error=errors, results=results, retry_at=retry_at, messages=kept)
            counts.retried += len(rows)
            self.log.warning("notification_retry", outbox_id=head.id, channel=head.channel,
                             rows=len(rows), attempts=attempts,
                             retry_in_s=round((retry_at - now).total_seconds(), 3),
                             reason=errors)
            return False
        if retries or failures:
            self._record(rows, status=OutboxStatus.FAILED, attempted=attempted, now=now,
                         last_error=errors, results=results, messages=kept)
            counts.failed += len(rows)
            self.log.error("notification_failed", outbox_id=head.id, channel=head.channel,
                           rows=len(rows), reason=errors)
            return True
        self._record(rows, status=OutboxStatus.DELIVERED, attempted=attempted, now=now,
                     last_error=None, results=results, messages=kept)
        counts.delivered += len(rows)
        self.log.info("notification_delivered", outbox_id=head.id, channel=head.channel,
                      rows=len(rows), attempts=head.attempts + 1)
        return True

    def _summarise_repeats(self, rows: Sequence[OutboxRow], now: datetime, counts: Counts
                           ) -> tuple[list[OutboxRow], dict[int, tuple[int, datetime]]]:
        """Drop rows identical to a recent post (merged into it); note how many repeats
        were merged since an older post of the rows that go out."""
        fingerprints = sorted({r.fingerprint for r in rows if r.fingerprint})
        if not fingerprints:
            return list(rows), {}
        last = self.outbox.last_posts(fingerprints)
        kept: list[OutboxRow] = []
        repeats: dict[int, tuple[int, datetime]] = {}
        for row in rows:
            post = last.get(row.fingerprint) if row.fingerprint else None
            if post is not None and is_repeat(post.delivered_at, now):
                self.outbox.merge_repeat(row.id, post.id, now, self.instance)
                counts.merged += 1
                continue
            if post is not None and post.repeats:
                repeats[row.id] = (post.repeats, post.delivered_at)
            kept.append(row)
        return kept, repeats

    # --- recording ---

    def _record(self, rows: Sequence[OutboxRow], *, status: str, attempted: bool,
                now: datetime, last_error: str | None, results: dict[str, str],
                retry_at: datetime | None = None,
                messages: dict[str, str] | None = None) -> None:
        """The outcome of one post on its rows and, for a thread, the message each
        destination holds for it, in one transaction."""
        delivery = DeliveryRecord(
            ids=tuple(r.id for r in rows), status=OutboxStatus(status), at=now,
            next_attempt_at=retry_at or rows[0].next_attempt_at, attempted=attempted,
            sent_by=self.instance, last_error=last_error, target_results=results,
            thread=rows[0].thread, thread_messages=messages or {})
        try:
            self._write(delivery)
        except DatabaseUnavailable:
            # Posted but not recorded: keep the outcome and write it when the database
            # answers, so the row is not posted again.
            self._unrecorded.append(delivery)
            raise

    def _write(self, delivery: DeliveryRecord) -> None:
        with self.db.transaction() as tx:
            Outbox(tx).record(delivery)

    def _record_unrecorded(self) -> None:
        while self._unrecorded:
            self._write(self._unrecorded[0])
            self._unrecorded.pop(0)

    # --- no channel, too old ---

    def _undeliverable(self, channel: Channel, now: datetime, counts: Counts) -> None:
        reason = f"no {channel} channel is configured: {SETUP_HINT[channel]}"
        closed = self.outbox.mark_undeliverable(channel, reason, now)
        if not closed:
            return
        counts.undeliverable += len(closed)
        key = UNDELIVERABLE_KEY + channel
        if self.runtime.store.get_state(key):
            return
        self.runtime.store.set_state(key, {"since": now.isoformat(), "reason": reason})
        self.runtime.store.record_event(
            EventType.NOTIFICATIONS_UNDELIVERABLE,
            f"{channel} messages cannot be delivered: {reason}", importance=Importance.HIGH,
            details={"channel": channel, "messages": len(closed)}, source="outbox")
        self._configured_noted.discard(channel)

    def _note_configured(self, channel: Channel) -> None:
        if channel in self._configured_noted:
            return
        key = UNDELIVERABLE_KEY + channel
        if self.runtime.store.get_state(key):
            self.runtime.store.set_state(key, None)
        self._configured_noted.add(channel)

    def _give_up(self, channel: Channel, now: datetime, counts: Counts) -> None:
        max_age_s = self.runtime.settings.outbox_max_age_s
        given_up = self.outbox.give_up(channel, give_up_cutoff(now, max_age_s), now)
        if not given_up:
            return
        counts.given_up += len(given_up)
        summary = (f"gave up {len(given_up)} {channel} message(s) undelivered after "
                   f"{max_age_s:g}s: {given_up[-1].last_error}")
        notify = None
        if channel != Channel.ALERTS:  # else the alerts channel is the one failing
            notify = Notification(
                Channel.ALERTS, f"aegis gave up {len(given_up)} {channel} message(s)",
                body=summary, importance=Importance.CRITICAL)
        self.runtime.store.record_event(
            EventType.NOTIFICATION_GIVEN_UP, summary, importance=Importance.CRITICAL,
            source="outbox",
            details={"channel": channel, "outbox_ids": [r.id for r in given_up],
                     "titles": [r.title for r in given_up[:10]]},
            notify=notify)


def send_test(runtime: Runtime, channel: Channel) -> tuple[OutboxRow | None, list[str]]:
    """Queue a test message to ``channel`` and post it now through the same path as every
    message; return its row and the destinations it was meant for."""
    sender = Sender(runtime)
    dedup_key = f"test:{uuid.uuid4()}"
    runtime.store.record_event(
        EventType.NOTIFICATION_TEST, f"test message to the {channel} channel", source="cli",
        notify=Notification(Channel(channel), "aegis test message",
                            body=f"A test message from aegis on {runtime.settings.host}. "
                                 "If you can read this, the channel works.",
                            importance=Importance.LOW, dedup_key=dedup_key, groupable=False))
    row = sender.outbox.by_dedup_key(dedup_key)
    labels = [target.label for target in sender.targets[channel]]
    return (sender.deliver_row(row.id) if row else None), labels


def deliver_pending(runtime: Runtime, now: datetime | None = None) -> dict[str, int]:
    """Deliver every due message once, without waiting (``aegis run --once``, tests)."""
    return Sender(runtime).deliver(now, flush=True).as_dict()


def run_sender(runtime: Runtime, stop_event: threading.Event) -> None:
    """The outbox sender service: runs until ``stop_event`` is set, woken by the outbox
    insert trigger and polling every POLL_S as a fallback."""
    sender = Sender(runtime)
    wake = threading.Event()
    runtime.db.subscribe(OUTBOX_CHANNEL, wake)  # a queued message wakes the sender
    try:
        _deliver_until(sender, wake, stop_event)
    finally:
        runtime.db.unsubscribe(OUTBOX_CHANNEL, wake)


def _deliver_until(sender: Sender, wake: threading.Event, stop_event: threading.Event) -> None:
    log = sender.log
    database_down = False
    while not stop_event.is_set():
        wake.clear()
        try:
            sender.deliver(flush=False)
            delay_s = sender.sleep_s(sender.clock())
            if database_down:
                log.info("outbox_sender_resumed")
                database_down = False
        except DatabaseUnavailable as exc:
            if not database_down:
                log.warning("outbox_sender_waiting_for_database", error=str(exc))
                database_down = True
            delay_s = DB_RETRY_S
        except Exception as exc:
            log.error("outbox_sender_failed", error=str(exc), exc_info=True)
            delay_s = DB_RETRY_S
        _wait(wake, stop_event, delay_s)


def _wait(wake: threading.Event, stop: threading.Event, timeout_s: float) -> None:
    deadline_s = timeout_s
    while deadline_s > 0 and not stop.is_set():
        if wake.wait(min(STOP_CHECK_S, deadline_s)):
            return
        deadline_s -= STOP_CHECK_S

