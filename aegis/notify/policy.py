"""Delivery decisions of the outbox sender, as pure functions of the rows and ``now``:
which rows a sender may take, which go out together as one post, which are summarised
repeats, when a failed post is tried again, and when a message is given up."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aegis.storage.outbox import Channel, OutboxRow

# Alerts wait this long for companions, so a burst becomes one post.
GROUP_WAIT_S = 5.0
# Alerts queued within this long of the oldest one may share its post.
GROUP_WINDOW_S = 60.0
MAX_GROUP_ROWS = 20
# An identical critical alert posted less than this long ago is counted, not reposted.
REPEAT_WINDOW_S = 3600.0
RETRY_BASE_S = 5.0
RETRY_MAX_S = 900.0
# A 429 is retried a little after Discord's retry_after, never before it.
RATE_LIMIT_MARGIN_S = 0.05


@dataclass(frozen=True)
class Batch:
    """Rows to post now as one message, or the time to look again."""

    rows: tuple[OutboxRow, ...] = ()
    wait_until: datetime | None = None


def claimable(rows: Sequence[OutboxRow], now: datetime, instance: str) -> list[OutboxRow]:
    """The leading rows (oldest first) this sender may take without breaking the channel's
    order: stop at the first row that is not due yet or is leased to another sender."""
    taken: list[OutboxRow] = []
    for row in rows:
        leased_elsewhere = (row.claimed_until is not None and row.claimed_until > now
                            and row.claimed_by != instance)
        if leased_elsewhere or row.next_attempt_at > now:
            break
        taken.append(row)
    return taken


def may_share_post(channel: Channel, groupable: bool) -> bool:
    """Whether a row waits for companions and goes out with them: groupable alerts and
    escalation pages (a storm's escalations, due together, are one page)."""
    return channel in (Channel.ALERTS, Channel.ESCALATION) and groupable


def plan_batch(rows: Sequence[OutboxRow], now: datetime, *, flush: bool = False) -> Batch:
    """Which of the claimable ``rows`` (oldest first) go out in the next post.

    Journal messages and ungroupable alerts go alone. Other alerts (and pages) wait up to
    GROUP_WAIT_S after the oldest was queued (unless ``flush``), then every following
    groupable alert queued within GROUP_WINDOW_S of it joins, up to MAX_GROUP_ROWS.
    """
    if not rows:
        return Batch()
    head = rows[0]
    if not may_share_post(head.channel, head.groupable):
        return Batch(rows=(head,))
    ready_at = head.created_at + timedelta(seconds=GROUP_WAIT_S)
    if not flush and now < ready_at and len(rows) < MAX_GROUP_ROWS:
        return Batch(wait_until=ready_at)
    window_end = head.created_at + timedelta(seconds=GROUP_WINDOW_S)
    group = [head]
    for row in rows[1:]:
        if len(group) >= MAX_GROUP_ROWS or not row.groupable or row.created_at > window_end:
            break
        group.append(row)
    return Batch(rows=tuple(group))


def is_repeat(last_posted_at: datetime | None, now: datetime,
              window_s: float = REPEAT_WINDOW_S) -> bool:
    """True when an identical alert was posted within the repeat window."""
    return last_posted_at is not None and now - last_posted_at < timedelta(seconds=window_s)


def retry_delay_s(attempts: int, rng: random.Random) -> float:
    """Exponential back-off with jitter after ``attempts`` failed posts (1, 2, ...):
    between half and all of RETRY_BASE_S * 2**(attempts-1), capped at RETRY_MAX_S."""
    ceiling_s = min(RETRY_MAX_S, RETRY_BASE_S * float(2 ** max(0, min(attempts - 1, 30))))
    return ceiling_s * (0.5 + rng.random() / 2)


def next_attempt_at(attempts: int, now: datetime, rng: random.Random,
                    retry_after_s: float | None = None) -> datetime:
    """When to try again: the server's retry_after when it gave one, else the back-off."""
    if retry_after_s is not None:
        delay_s = max(0.0, retry_after_s) + RATE_LIMIT_MARGIN_S
    else:
        delay_s = retry_delay_s(attempts, rng)
    return now + timedelta(seconds=delay_s)


def give_up_cutoff(now: datetime, max_age_s: float) -> datetime:
    """Pending messages queued before this are given up."""
    return now - timedelta(seconds=max_age_s)


def next_look_at(head_created_at: datetime, head_next_attempt_at: datetime,
                 head_claimed_until: datetime | None, grouped: bool) -> datetime:
    """When a channel whose oldest pending row is this one has work again."""
    candidates = [head_next_attempt_at]
    if head_claimed_until is not None:
        candidates.append(head_claimed_until)
    if grouped:
        candidates.append(head_created_at + timedelta(seconds=GROUP_WAIT_S))
    return max(candidates)
