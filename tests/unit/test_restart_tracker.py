"""Which checks wait for the restarts under way: a container whose restart is over is
judged once the others restarted with it have been made."""

from __future__ import annotations

import time

from aegis.supervision import restarter
from aegis.supervision.restarter import RestartTracker

HOST = "web-01"
FIRST, SECOND = "a" * 64, "b" * 64


def test_a_container_restarted_alone_is_judged_at_once() -> None:
    tracker = RestartTracker()
    assert tracker.held_until(FIRST) is None  # never restarted
    tracker.begin(HOST, "first", FIRST)
    tracker.end(HOST, "first")
    assert tracker.held_until(FIRST) is None
    assert tracker.held_until("first") is None


def test_a_restart_over_waits_for_the_others_under_way() -> None:
    tracker = RestartTracker()
    tracker.begin(HOST, "first", FIRST)
    tracker.begin(HOST, "second", SECOND)
    tracker.end(HOST, "first")
    ended = time.monotonic()
    for name_or_id in (FIRST, "first"):
        until = tracker.held_until(name_or_id)
        assert until is not None
        assert ended < until <= ended + restarter.JUDGED_AFTER_OTHERS_MAX_S
    assert tracker.held_until(SECOND) is None  # still being restarted: not judged here
    assert tracker.held_until("c" * 64) is None  # not restarted: judged at once
    tracker.end(HOST, "second")
    assert tracker.held_until(FIRST) is None
    assert tracker.held_until(SECOND) is None


def test_a_restart_begun_after_it_ended_holds_up_no_check() -> None:
    """Restarted before a burst and over: the burst's restarts, begun later, are not the
    ones it waits for."""
    tracker = RestartTracker()
    tracker.begin(HOST, "first", FIRST)
    tracker.end(HOST, "first")
    tracker.begin(HOST, "second", SECOND)
    assert tracker.held_until(FIRST) is None
    tracker.begin(HOST, "first", FIRST)  # restarted again with the burst, and over first
    tracker.end(HOST, "first")
    assert tracker.held_until(FIRST) is not None


def test_the_wait_is_bounded() -> None:
    now = [100.0]
    tracker = RestartTracker(clock=lambda: now[0])
    tracker.begin(HOST, "first", FIRST)
    tracker.begin(HOST, "second", SECOND)
    tracker.end(HOST, "first")
    assert tracker.held_until(FIRST) == 100.0 + restarter.JUDGED_AFTER_OTHERS_MAX_S
    now[0] += restarter.JUDGED_AFTER_OTHERS_MAX_S
    assert tracker.held_until(FIRST) is None  # the second restart is still under way
