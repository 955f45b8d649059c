"""The outbox sender: delivers queued notifications in order per channel.

    claim the channel's oldest due rows -> post them as one message -> record the outcome

A row is leased (``claimed_by``/``claimed_until``) while it is posted, and only the
channel's oldest pending row can start a claim, so two daemons never post the same row
and a channel's messages never overtake each other. Failures are recorded on the row and
retried with back-off; nothing here lets a webhook or the database stop the loop. What
to post is policy.py's, how a row of a thread reaches its living message threads.py's,
and a channel without destinations or a message too old undelivered.py's.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from aegis.core.clock import utcnow
from aegis.core.errors import DatabaseUnavailable
from aegis.core.logs import get_logger
from aegis.notify.channels import targets_for, unconfigured_reason
from aegis.notify.messages import Message, render
from aegis.notify.policy import (
    MAX_GROUP_ROWS,
    Batch,
    claimable,
    is_repeat,
    may_share_post,
    next_attempt_at,
    next_look_at,
    plan_batch,
)
from aegis.notify.targets import Outcome, Result, Target
from aegis.notify.threads import LivingMessages
from aegis.notify.undelivered import Undelivered
from aegis.storage.db import Database
from aegis.storage.outbox import Channel, DeliveryRecord, Outbox, OutboxRow, OutboxStatus
from aegis.storage.runtime import Runtime

# The NOTIFY channel the outbox's insert trigger feeds.
OUTBOX_CHANNEL = "aegis_outbox"
CLAIM_LEASE_S = 60.0
POLL_S = 30.0
MIN_SLEEP_S = 0.05
DB_RETRY_S = 5.0
STOP_CHECK_S = 0.5
# The target_results of a destination that cannot edit, for an update of a living message.
SKIPPED = "skipped: an update of a message (only destinations that edit get it)"
RATE_LIMITED = "Discord rate limit bucket is empty"
# Channels only a daemon configured for them queues to: a sender without their
# destinations leaves their messages to one that has them (another host's).
LEFT_TO_OTHERS = frozenset({Channel.ESCALATION})

Clock = Callable[[], datetime]


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


@dataclass
class Attempt:
    """One message sent to the destinations of its channel that have not taken it yet."""

    # Target id -> how it took the message, as kept on the row (``target_results``).
    results: dict[str, str]
    outcomes: list[tuple[Target, Outcome]] = field(default_factory=list)
    # Whether a destination was asked, not only held back by a rate limit.
    attempted: bool = False
    posts: int = 0
    # Target id -> the message it holds afterwards (kept for a row of a thread).
    held: dict[str, str] = field(default_factory=dict)

    def add(self, target: Target, outcome: Outcome) -> None:
        if not outcome.should_retry:
            self.results[target.id] = (Result.DELIVERED if outcome.delivered
                                       else f"{Result.FAILED}: {outcome.reason}")
        if outcome.delivered:
            self.posts += 1
            if outcome.message_id:
                self.held[target.id] = outcome.message_id
        self.outcomes.append((target, outcome))

    @property
    def retries(self) -> list[tuple[Target, Outcome]]:
        return [(target, outcome) for target, outcome in self.outcomes if outcome.should_retry]

    @property
    def refusals(self) -> list[tuple[Target, Outcome]]:
        return [(target, outcome) for target, outcome in self.outcomes if outcome.refused]

    @property
    def errors(self) -> str | None:
        """Each destination's reason, for the row's ``last_error``."""
        found = self.retries + self.refusals
        return "; ".join(f"{target.label}: {outcome.reason}" for target, outcome in found) or None

    @property
    def retry_after_s(self) -> float | None:
        """Only rate limits among the retries: the longest ``retry_after``; a 5xx or a
        timeout among them: None (back off)."""
        after_s = [o.retry_after_s for _, o in self.retries if o.retry_after_s is not None]
        return max(after_s) if after_s and len(after_s) == len(self.retries) else None


class Sender:
    """Delivers the outbox's due messages, pass after pass (``deliver``), to the
    destinations of their channels."""

    def __init__(self, runtime: Runtime, *,
                 targets: dict[Channel, list[Target]] | None = None,
                 instance: str | None = None, clock: Clock = utcnow,
                 rng: random.Random | None = None) -> None:
        self.runtime = runtime
        self.db: Database = runtime.db
        self.outbox = Outbox(runtime.db)
        given = targets if targets is not None else targets_for(runtime.settings)
        # a channel not given has no destination
        self.targets = {channel: given.get(channel, []) for channel in Channel}
        self.instance = instance or f"{runtime.settings.host}-{os.getpid()}"
        self.clock = clock
        self.rng = rng or random.Random()
        self.log = get_logger(component="outbox_sender")
        self.living = LivingMessages(self.outbox, self.log)
        self.undelivered = Undelivered(runtime, self.outbox)
        self._paused_until: dict[str, datetime] = {}
        self._unrecorded: list[DeliveryRecord] = []

    # --- passes ---

    def deliver(self, now: datetime | None = None, *, flush: bool = True,
                channels: Iterable[Channel] = tuple(Channel)) -> Counts:
        """Post every due message of ``channels``; ``now`` fixes the clock (tests), and
        ``flush`` sends alerts without waiting for companions."""
        counts = Counts()
        self._record_unrecorded()
        clock = self._pass_clock(now)
        for channel in channels:
            self._deliver_channel(channel, clock, flush, counts)
        return counts

    def _pass_clock(self, now: datetime | None) -> Clock:
        """The clock of one pass: ``now`` throughout when the caller fixed it."""
        if now is None:
            return self.clock
        return lambda: now

    def _deliver_channel(self, channel: Channel, clock: Clock, flush: bool,
                         counts: Counts) -> None:
        now = clock()
        counts.given_up += self.undelivered.give_up_expired(channel, now)
        if not self.targets[channel]:
            if channel not in LEFT_TO_OTHERS:
                counts.undeliverable += self.undelivered.close_unconfigured(channel, now)
            return
        self.undelivered.note_configured(channel)
        while True:
            batch = self._claim(channel, clock(), flush)
            if not batch.rows or not self._post(batch.rows, clock, counts):
                return

    def deliver_row(self, row_id: int, now: datetime | None = None) -> OutboxRow | None:
        """Post one row now, outside the channel order, with no retry (``notify test``)."""
        clock = self._pass_clock(now)
        row = self._claim_row(row_id, clock())
        if row is None:
            return self.outbox.get(row_id)
        if self.targets[row.channel]:
            self._post([row], clock, Counts(), final=True)
        else:
            self._save(DeliveryRecord(
                ids=(row.id,), status=OutboxStatus.UNDELIVERABLE, at=clock(),
                next_attempt_at=row.next_attempt_at, attempted=False, sent_by=self.instance,
                last_error=unconfigured_reason(row.channel), target_results=row.target_results))
        return self.outbox.get(row_id)

    def sleep_s(self, now: datetime) -> float:
        """Seconds until some channel has work again (at most POLL_S)."""
        wake_at = now + timedelta(seconds=POLL_S)
        for head in self.outbox.heads():
            if self.targets.get(head.channel):
                look_at = next_look_at(head.created_at, head.next_attempt_at,
                                       head.claimed_until,
                                       grouped=may_share_post(head.channel, head.groupable))
                wake_at = min(wake_at, look_at)
        return max(MIN_SLEEP_S, (wake_at - now).total_seconds())

    # --- claiming ---

    def _claim(self, channel: Channel, now: datetime, flush: bool) -> Batch:
        with self.db.transaction() as tx:
            outbox = Outbox(tx)
            rows = outbox.channel_head(channel, MAX_GROUP_ROWS)
            if not rows or rows[0].id != outbox.first_pending_id(channel):
                # Another sender is claiming this channel's head right now.
                return Batch()
            batch = plan_batch(claimable(rows, now, self.instance), now, flush=flush)
            if batch.rows:
                outbox.claim([r.id for r in batch.rows], self.instance, self._lease_end(now))
            return batch

    def _claim_row(self, row_id: int, now: datetime) -> OutboxRow | None:
        """One pending row, leased to this sender; None when it is not pending or another
        sender holds it."""
        with self.db.transaction() as tx:
            row = Outbox(tx).lock_row(row_id)
            if row is not None:
                Outbox(tx).claim([row_id], self.instance, self._lease_end(now))
            return row

    @staticmethod
    def _lease_end(now: datetime) -> datetime:
        return now + timedelta(seconds=CLAIM_LEASE_S)

    # --- posting ---

    def _post(self, rows: Sequence[OutboxRow], clock: Clock, counts: Counts, *,
              final: bool = False) -> bool:
        """Post ``rows`` as one message and record how it went; True when the channel may
        go on to the next. ``final``: a post worth a retry fails instead."""
        rows, repeats = self._summarise_repeats(rows, clock(), counts)
        if not rows:
            return True
        head = rows[0]
        attempt = self._send(head, render(rows, instance=self.instance, repeats=repeats),
                             clock)
        counts.posts += attempt.posts
        # Back-off and retry_after count from the answer, not from before the post (a
        # timeout takes seconds).
        now = clock()
        log = self.log.bind(outbox_id=head.id, channel=head.channel, rows=len(rows))
        if attempt.retries and not final:
            attempts = head.attempts + (1 if attempt.attempted else 0)
            retry_at = next_attempt_at(max(1, attempts), now, self.rng, attempt.retry_after_s)
            self._record(rows, attempt, OutboxStatus.PENDING, now, retry_at)
            counts.retried += len(rows)
            log.warning("notification_retry", attempts=attempts,
                        retry_in_s=round((retry_at - now).total_seconds(), 3),
                        reason=attempt.errors)
            return False
        if attempt.retries or attempt.refusals:
            self._record(rows, attempt, OutboxStatus.FAILED, now)
            counts.failed += len(rows)
            log.error("notification_failed", reason=attempt.errors)
            return True
        self._record(rows, attempt, OutboxStatus.DELIVERED, now)
        counts.delivered += len(rows)
        log.info("notification_delivered", attempts=head.attempts + 1)
        return True

    def _send(self, head: OutboxRow, message: Message, clock: Clock) -> Attempt:
        """``message`` (for ``head`` and the rows it carries) to each destination of the
        channel that has not taken it yet."""
        attempt = Attempt(results=dict(head.target_results))
        for target in self.targets[head.channel]:
            if target.id in attempt.results:
                # Posted there already, or refused for good.
                continue
            if head.edit_only and not target.edits:
                # An update of a message it cannot edit.
                attempt.results[target.id] = SKIPPED
                continue
            outcome = self._held_back(target, clock())
            if outcome is None:
                attempt.attempted = True
                outcome = self.living.send(target, head, message)
            self._hold_back(target, outcome, clock())
            attempt.add(target, outcome)
        return attempt

    def _held_back(self, target: Target, now: datetime) -> Outcome | None:
        """A retry, without asking, while Discord's rate limit holds ``target`` back."""
        paused_until = self._paused_until.get(target.id)
        if paused_until is None or paused_until <= now:
            return None
        return Outcome(Result.RETRY, RATE_LIMITED,
                       retry_after_s=(paused_until - now).total_seconds())

    def _hold_back(self, target: Target, outcome: Outcome, now: datetime) -> None:
        """After an empty rate-limit bucket or a 429, no post to ``target`` for a while."""
        pause_s = outcome.pause_s or outcome.retry_after_s
        if pause_s:
            self._paused_until[target.id] = now + timedelta(seconds=pause_s)

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

    def _record(self, rows: Sequence[OutboxRow], attempt: Attempt, status: OutboxStatus,
                now: datetime, retry_at: datetime | None = None) -> None:
        """How ``attempt`` went, on every row it carried."""
        self._save(DeliveryRecord(
            ids=tuple(r.id for r in rows), status=status, at=now,
            next_attempt_at=retry_at or rows[0].next_attempt_at, attempted=attempt.attempted,
            sent_by=self.instance, last_error=attempt.errors, target_results=attempt.results,
            thread=rows[0].thread, thread_messages=attempt.held))

    def _save(self, delivery: DeliveryRecord) -> None:
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


# --- the service ---


def deliver_pending(runtime: Runtime, now: datetime | None = None) -> dict[str, int]:
    """Deliver every due message once, without waiting (``aegis run --once``, tests)."""
    return Sender(runtime).deliver(now, flush=True).as_dict()


def run_sender(runtime: Runtime, stop_event: threading.Event) -> None:
    """The outbox sender service: runs until ``stop_event`` is set, woken by the outbox
    insert trigger and polling every POLL_S as a fallback."""
    sender = Sender(runtime)
    wake = threading.Event()
    # A queued message wakes the sender.
    runtime.db.subscribe(OUTBOX_CHANNEL, wake)
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
    """Until ``wake`` or ``stop`` is set, or ``timeout_s`` passed."""
    remaining_s = timeout_s
    while remaining_s > 0 and not stop.is_set():
        if wake.wait(min(STOP_CHECK_S, remaining_s)):
            return
        remaining_s -= STOP_CHECK_S
