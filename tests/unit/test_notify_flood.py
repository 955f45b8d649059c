"""Delivery decisions as tables of datetimes: claims, groups, repeats, back-off, give-up."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aegis.notify.policy import (
    GROUP_WAIT_S,
    MAX_GROUP_ROWS,
    RETRY_MAX_S,
    claimable,
    give_up_cutoff,
    is_repeat,
    next_attempt_at,
    next_look_at,
    plan_batch,
    retry_delay_s,
)
from aegis.storage.events import Importance
from aegis.storage.outbox import Channel, Notification, OutboxRow, OutboxStatus, fingerprint

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(i: int, created_s: float = 0.0, channel: str = "alerts", **changes: object
        ) -> OutboxRow:
    base = OutboxRow(id=i, channel=Channel(channel), dedup_key=f"k{i}", host="h",
                     title=f"t{i}", body="", importance=Importance.HIGH, fields={},
                     status=OutboxStatus.PENDING, attempts=0, next_attempt_at=s(created_s),
                     created_at=s(created_s))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_claims_stop_at_a_row_not_due_or_leased_elsewhere() -> None:
    rows = [row(1), row(2), row(3, next_attempt_at=s(100)), row(4)]
    assert [r.id for r in claimable(rows, s(10), "me")] == [1, 2]
    leased = [row(1, claimed_by="other", claimed_until=s(60)), row(2)]
    assert claimable(leased, s(10), "me") == []
    assert [r.id for r in claimable(leased, s(61), "me")] == [1, 2]  # lease expired
    mine = [row(1, claimed_by="me", claimed_until=s(60))]
    assert [r.id for r in claimable(mine, s(10), "me")] == [1]


def test_alerts_wait_for_companions_then_go_together() -> None:
    rows = [row(1, 0), row(2, 1), row(3, 3)]
    assert plan_batch(rows, s(1)).wait_until == s(GROUP_WAIT_S)
    assert [r.id for r in plan_batch(rows, s(1), flush=True).rows] == [1, 2, 3]
    assert [r.id for r in plan_batch(rows, s(GROUP_WAIT_S)).rows] == [1, 2, 3]


@pytest.mark.parametrize(("rows", "expected"), [
    ([row(1, 0, channel="journal"), row(2, 0, channel="journal")], [1]),
    ([row(1, 0, groupable=False), row(2, 0)], [1]),
    ([row(1, 0), row(2, 0, groupable=False), row(3, 0)], [1]),
    ([row(1, 0), row(2, 30), row(3, 61)], [1, 2]),  # outside the grouping window
    # pages of the escalation route due together (a storm's) are one page
    ([row(1, 0, channel="escalation"), row(2, 2, channel="escalation")], [1, 2]),
])
def test_what_goes_out_together(rows: list[OutboxRow], expected: list[int]) -> None:
    assert [r.id for r in plan_batch(rows, s(100)).rows] == expected


def test_a_full_group_goes_without_waiting_and_is_capped() -> None:
    rows = [row(i, 0) for i in range(1, MAX_GROUP_ROWS + 5)]
    batch = plan_batch(rows, s(0.5))
    assert len(batch.rows) == MAX_GROUP_ROWS


def test_repeats_within_the_window_only() -> None:
    assert is_repeat(s(0), s(3599))
    assert not is_repeat(s(0), s(3600))
    assert not is_repeat(None, s(0))


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    for attempts, ceiling in [(1, 5), (2, 10), (3, 20), (6, 160), (20, RETRY_MAX_S)]:
        delays = [retry_delay_s(attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len({round(d, 6) for d in delays}) > 40  # jittered, not synchronised


def test_retry_after_is_honoured_exactly_plus_a_margin() -> None:
    assert next_attempt_at(9, T0, random.Random(0), retry_after_s=2.5) == s(2.55)
    assert next_attempt_at(1, T0, random.Random(0)) <= s(5)


def test_give_up_and_next_look() -> None:
    assert give_up_cutoff(s(86400), 86400) == T0
    assert next_look_at(s(0), s(30), None, grouped=False) == s(30)
    assert next_look_at(s(0), s(0), s(60), grouped=False) == s(60)
    assert next_look_at(s(0), s(0), None, grouped=True) == s(GROUP_WAIT_S)


def test_only_event_keyed_critical_alerts_are_fingerprinted() -> None:
    critical = Notification(Channel.ALERTS, "db down", "timeout", importance=Importance.CRITICAL)
    assert fingerprint(critical) == fingerprint(Notification(Channel.ALERTS, "db down", "timeout",
                                                             importance=Importance.CRITICAL))
    assert fingerprint(critical) != fingerprint(replace(critical, body="refused"))
    assert fingerprint(replace(critical, importance=Importance.HIGH)) is None
    assert fingerprint(replace(critical, dedup_key="escalation:h:web:1")) is None
    assert fingerprint(Notification(Channel.JOURNAL, "digest",
                                    importance=Importance.CRITICAL)) is None
