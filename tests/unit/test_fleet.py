"""The fleet's statuses and silences as pure functions of the heartbeats and ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aegis.reports.fleet import HostView, silences
from aegis.scheduling.heartbeat import DaemonStatus, peer_status

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "age_s", "expected"), [
    ("running", 5, DaemonStatus.RUNNING),
    ("running", 45, DaemonStatus.STALE),  # over the 30 s floor, under the peer timeout
    ("running", 181, DaemonStatus.SILENT),
    ("stopped", 10_000, DaemonStatus.STOPPED),  # a clean stop is never a silence
    (None, None, DaemonStatus.NEVER_STARTED),
])
def test_peer_status(status: str | None, age_s: float | None, expected: DaemonStatus) -> None:
    last = None if age_s is None else NOW - timedelta(seconds=age_s)
    assert peer_status(status, last, NOW, 10.0, 180.0) == expected


def view(host: str, status: DaemonStatus) -> HostView:
    return HostView(host=host, status=status, last_heartbeat_at=NOW, heartbeat_age_s=0.0,
                    version="0.1.0", instance_id=f"{host}-1", supervised=3, unhealthy=0,
                    in_incident=0, incidents=0, last_escalation_at=None)


def test_a_silence_is_new_once_and_resumed_once() -> None:
    hosts = [view("a", DaemonStatus.RUNNING), view("b", DaemonStatus.SILENT),
             view("c", DaemonStatus.STOPPED)]
    first = silences(hosts, reported=set())
    assert [v.host for v in first.new] == ["b"]
    assert first.resumed == ()
    assert silences(hosts, reported={"b"}).new == ()  # already reported: nothing again
    back = silences([view("a", DaemonStatus.RUNNING), view("b", DaemonStatus.RUNNING)],
                    reported={"b"})
    assert (back.new, [v.host for v in back.resumed]) == ((), ["b"])

