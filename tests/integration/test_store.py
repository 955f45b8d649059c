"""Episodic memory and state on a real PostgreSQL, and the spool across a real outage."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from aegis import api
from aegis.core.errors import DatabaseUnavailable, UsageError
from aegis.storage.db import Database
from aegis.storage.events import MAX_SUMMARY_CHARS
from aegis.storage.outbox import Channel, Notification
from aegis.storage.spool import Spool
from aegis.storage.store import Store
from tests.support.postgres import OwnPostgres
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def ticking_clock(start: datetime = T0, step: timedelta = timedelta(seconds=1)
                  ) -> Callable[[], datetime]:
    moments = iter(start + i * step for i in range(1_000_000))
    return lambda: next(moments)


# --- events and state on the shared server ---


def test_recorded_events_come_back_newest_first_with_every_field(app: api.Aegis) -> None:
    app.store.clock = ticking_clock()
    app.store.record_event("deploy_finished", "web rolled out", importance="medium",
                           details={"image": "web:2", "replicas": 3}, source="ci")
    app.store.record_event("health_check_complete", "db ok")
    found = app.store.query_events(since=T0 - timedelta(hours=1))
    assert [e.event_type for e in found] == ["health_check_complete", "deploy_finished"]
    event = found[1]
    assert event.to_json() == {
        "timestamp": "2026-03-01T12:00:00+00:00", "event_type": "deploy_finished",
        "summary": "web rolled out", "importance": "medium", "host": "test-host",
        "source": "ci", "details": {"image": "web:2", "replicas": 3}}
    assert found[0].source == "aegis"
    assert found[0].importance == "low"


def test_query_filters_by_time_type_importance_and_limit(app: api.Aegis) -> None:
    app.store.clock = ticking_clock(step=timedelta(hours=1))
    for event_type, importance in [("a", "low"), ("b", "medium"), ("a", "high"),
                                   ("c", "critical"), ("b", "low")]:
        app.store.record_event(event_type, f"{event_type} {importance}", importance=importance)
    since = T0 + timedelta(minutes=30)  # drops the first

    def summaries(**kwargs: Any) -> list[str]:
        return [e.summary for e in app.store.query_events(since=since, **kwargs)]

    assert summaries() == ["b low", "c critical", "a high", "b medium"]
    assert summaries(event_types=["a", "c"]) == ["c critical", "a high"]
    assert summaries(min_importance="high") == ["c critical", "a high"]
    assert summaries(min_importance="medium", event_types=["b"]) == ["b medium"]
    assert summaries(limit=2) == ["b low", "c critical"]
    with pytest.raises(UsageError, match="importance 'urgent'"):
        app.store.query_events(since=since, min_importance="urgent")


def test_memory_query_reads_since_as_text(app: api.Aegis) -> None:
    app.memory.record("recent", "now")
    app.store.record_event("old", "long ago", timestamp=datetime.now(UTC) - timedelta(days=3))
    assert [e.event_type for e in app.memory.query("24h")] == ["recent"]
    assert {e.event_type for e in app.memory.query("7d")} == {"recent", "old"}
    with pytest.raises(UsageError, match="since"):
        app.memory.query("yesterday")


def test_bad_events_are_refused_and_odd_values_made_safe(app: api.Aegis) -> None:
    with pytest.raises(UsageError, match="snake_case"):
        app.store.record_event("Deploy Finished", "x")
    with pytest.raises(UsageError, match="importance"):
        app.store.record_event("deploy", "x", importance="urgent")
    event = app.store.record_event("big", "x" * (MAX_SUMMARY_CHARS + 50),
                                   details={"when": T0, "path": Path("/srv")})
    assert len(event.summary) == MAX_SUMMARY_CHARS
    assert event.details == {"when": "2026-03-01 12:00:00+00:00", "path": "/srv"}
    rows = sql_rows(app.settings.dsn or "", "SELECT event_type, details FROM episodic_memory")
    assert rows == [{"event_type": "big", "details": event.details}]


def test_each_event_is_also_one_structured_log_line(app: api.Aegis) -> None:
    with capture_logs() as logs:
        app.store.record_event("container_restarted", "web restarted", importance="high",
                               details={"container": "web", "strike": 2})
    assert logs == [{"event": "container_restarted", "summary": "web restarted",
                     "importance": "high", "container": "web", "strike": 2,
                     "log_level": "warning"}]


def test_a_notification_is_queued_in_the_events_transaction(app: api.Aegis) -> None:
    event = app.store.record_event(
        "container_escalated", "web needs a human", importance="critical",
        notify=Notification(channel=Channel.ALERTS, title="web needs a human"))
    rows = sql_rows(app.settings.dsn or "", "SELECT channel, title, event_uid::text AS uid "
                                            "FROM outbox")
    assert rows == [{"channel": "alerts", "title": "web needs a human", "uid": event.uid}]


def test_state_round_trips_json_and_an_older_write_never_wins(app: api.Aegis) -> None:
    assert app.state.get("missing") is None
    assert app.state.get("missing", default=7) == 7
    app.store.clock = ticking_clock()
    app.state.set("last_health_check", {"ok": True, "at": T0})
    app.state.set("counter", 1)
    app.state.set("counter", 2)
    assert app.state.get("counter") == 2
    assert app.state.get("last_health_check") == {"ok": True, "at": "2026-03-01 12:00:00+00:00"}
    app.store.clock = lambda: T0 - timedelta(days=1)  # a late replay of an old spooled write
    app.state.set("counter", 1)
    assert app.state.get("counter") == 2
    with pytest.raises(UsageError):
        app.state.set("", 1)


# --- the spool across a real outage of a dedicated server ---


def test_events_recorded_while_the_database_is_down_arrive_once_and_in_order(
    own_postgres: OwnPostgres, tmp_path: Path,
) -> None:
    db = Database(own_postgres.url, timeout_s=2.0)
    try:
        db.migrate()
        spool = Spool(tmp_path / "home" / "spool.jsonl")
        store = Store(db, spool, "test-host", clock=ticking_clock())
        store.record_event("before_outage", "e0")

        own_postgres.stop()
        with pytest.raises(DatabaseUnavailable):
            db.fetch_one("ping")
        for n in range(1, 6):
            store.record_event("during_outage", f"e{n}", importance="medium",
                               details={"n": n})
        store.set_state("db_healthy", False)
        assert spool.pending() == 6
        spooled = spool.path.read_text()

        own_postgres.start()
        wait_for(db.ping, 30, "the database to come back", every_s=0.2)
        store.record_event("after_outage", "e6")  # replays the spool first
        assert spool.pending() == 0

        # a crash between delivery and truncation replays the same records again
        spool.path.write_text(spooled)
        assert store.replay_spool() == 6

        rows = sql_rows(own_postgres.url,
                        "SELECT summary, host, details FROM episodic_memory ORDER BY id")
        assert [r["summary"] for r in rows] == [f"e{n}" for n in range(7)]
        assert {r["host"] for r in rows} == {"test-host"}
        assert [r["details"] for r in rows[1:6]] == [{"n": n} for n in range(1, 6)]
        timestamps = sql_rows(own_postgres.url,
                              "SELECT timestamp FROM episodic_memory ORDER BY id")
        seconds = [0, 1, 2, 3, 4, 5, 7]  # the state write took the clock's sixth tick
        assert [r["timestamp"] for r in timestamps] == [T0 + timedelta(seconds=s)
                                                       for s in seconds]
        assert store.get_state("db_healthy") is False
        assert [json.loads(line)["kind"] for line in spooled.splitlines()] == [
            "event"] * 5 + ["state"]
    finally:
        db.close()


def test_an_empty_spool_is_not_replayed_behind_another_threads_write(app: api.Aegis) -> None:
    """A strike asks the store to replay its spool before it saves; with nothing spooled
    that returns at once, even while another thread's write holds the store."""
    inside, release = threading.Event(), threading.Event()

    def slow(tx: Any) -> None:
        inside.set()
        release.wait(30)

    writer = threading.Thread(target=app.store.write, args=(slow, {"kind": "event"}))
    writer.start()
    try:
        assert inside.wait(10)
        replayed: list[int] = []
        replaying = threading.Thread(target=lambda: replayed.append(app.store.replay_spool()))
        replaying.start()
        replaying.join(5)
        assert replayed == [0]
    finally:
        release.set()
        writer.join(30)
