"""Rows written straight into a test's database, as aegis would have recorded them, for
the tests that read them back through a page, a command or a job: an open incident whose
every text from outside holds markup (the status page's tests), and a small fleet's day
(the digest's)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from tests.support.rows import execute, execute_many

# markup a container's name, label or probe output may carry, which a page must escape
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT}\n{IMG}"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # the pages' clock for seed_incident

# the seeded day of seed_day
DAY = date(2026, 3, 1)
T = datetime(2026, 3, 1, tzinfo=UTC)


# a row's columns, each with its default
def add_event(url: str, at: datetime, event_type: str,  # noqa: PLR0913
              importance: str = "low", summary: str = "s", host: str = "test-host",
              **details: Any) -> None:
    """An event as aegis records one, at ``at``, with ``details``."""
    execute(url, "INSERT INTO episodic_memory (timestamp, event_type, summary, details, "
            "importance, host) VALUES (%s, %s, %s, %s, %s, %s)",
            at, event_type, summary, json.dumps(details), importance, host)


def add_container(url: str, name: str, host: str = "test-host", **columns: Any) -> None:
    """A ``containers`` row of ``name`` (healthy unless ``columns`` say otherwise)."""
    values = {"host": host, "name": name, "health": "healthy", **columns}
    if "labels" in values:
        values["labels"] = json.dumps(values["labels"])
    execute(url, f"INSERT INTO containers ({', '.join(values)}) "
            f"VALUES ({', '.join(['%s'] * len(values))})", *values.values())


# a row's columns, each with its default
def add_run(url: str, job_id: str, slot: datetime, status: str = "ok",  # noqa: PLR0913
            late_s: float = 0.01, took_s: float = 1.0, trigger: str = "schedule",
            error: str | None = None, host: str = "test-host") -> None:
    """A finished run of ``job_id``'s slot ``slot``, started ``late_s`` after it."""
    execute(url, "INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, "
            "started_at, finished_at, status, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
            "%s)", job_id, host, host, trigger, slot, slot + timedelta(seconds=late_s),
            slot + timedelta(seconds=late_s + took_s), status, error)


def seed_incident(url: str) -> None:
    """An escalated container whose name, labels and probe output hold markup, a job that
    failed with markup in its error, and an event whose details hold markup."""
    add_container(url, SCRIPT, state="escalated", phase="escalated", strikes=3, incident=1,
                  health="unhealthy", strike_at=NOW - timedelta(minutes=5),
                  last_reason=f"still unhealthy {IMG}", labels={"aegis.max-restarts": IMG})
    add_container(url, "queue", state="striking", phase="striking", strikes=1, incident=3,
                  strike_at=NOW - timedelta(minutes=1))
    add_container(url, "backup", state="maintenance",
                  maintenance_until=NOW + timedelta(hours=1))
    add_container(url, "calm")  # healthy, no incident: not on the overview
    add_event(url, NOW - timedelta(minutes=6), "container_restarted", "high",
              container=SCRIPT, incident=1, probe_output="an older probe")
    add_event(url, NOW - timedelta(minutes=5), "container_escalated", "critical",
              summary=f"{SCRIPT} escalated", container=SCRIPT, incident=1,
              probe_output=HOSTILE, probe_exit_code=1)
    add_event(url, NOW - timedelta(hours=1), "deploy_finished", "high", summary=IMG,
              note=SCRIPT)
    execute(url, "INSERT INTO jobs (id, trigger, next_run_at) VALUES "
            "('health_check', 'every 5m', %s)", NOW + timedelta(minutes=3))
    add_run(url, "health_check", NOW - timedelta(hours=2), "failed", error=f"boom {SCRIPT}")
    add_run(url, "health_check", NOW - timedelta(hours=25), "failed", error="a day ago")
    execute(url, "INSERT INTO daemons VALUES ('i-1', 'test-host', 1, 'v', %s, %s, "
            "'running'), ('i-2', 'old-host', 2, 'v', %s, %s, 'running')",
            NOW - timedelta(days=1), NOW - timedelta(seconds=3), NOW - timedelta(days=9),
            NOW - timedelta(days=2))


def hour(hours: float) -> datetime:
    """The instant ``hours`` into the seeded day (UTC)."""
    return T + timedelta(hours=hours)


def seed_day(url: str) -> None:
    """One day of a small fleet: runs, failures, restarts, escalations, a failed message,
    plus rows just outside the day that must not be counted."""
    runs: list[tuple[str, datetime, str, str | None]]
    runs = [("health_check", hour(h), "ok", None) for h in (1, 2, 3, 4, 5)]
    runs += [("health_check", hour(6), "failed", "StoreError: connection refused")]
    runs += [("docker_health_check", hour(h), "ok", None) for h in (1, 2, 3)]
    runs += [("docker_health_check", hour(4), "failed", "DockerException: engine restarting"),
             ("docker_health_check", hour(5), "failed", "DockerException: engine restarting"),
             ("docker_health_check", hour(6), "timeout", "timeout: still running after 60s"),
             ("backup", hour(2), "missed", None),
             ("backup", hour(23.5), "running", None),
             ("evening_summary", hour(22), "ok", None),          # the digest's own run
             ("health_check", hour(-0.5), "failed", "yesterday"),  # the day before
             ("health_check", hour(24), "failed", "tomorrow")]     # the day after
    execute_many(url, "INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, "
            "started_at, finished_at, status, error) VALUES (%s, 'host-a', 'host-a', "
            "'schedule', %s, %s, %s, %s, %s)",
            [(job, slot, slot, None if status == "running" else slot, status, error)
             for job, slot, status, error in runs])

    def event(hours: float, event_type: str, importance: str, summary: str, host: str = "host-a",
              **details: Any) -> tuple[Any, ...]:
        return (hour(hours), event_type, summary, Jsonb(details), importance, host)

    events = [
        event(0.5, "memory_cleanup", "medium", "deleted 12 low events"),
        event(3, "container_unhealthy", "medium", "web is unhealthy (strike 1)", container="web"),
        event(3.1, "container_restarted", "high", "restarted web (strike 2)", container="web",
              reason="probe: curl exit 7, connection refused", restart_count=1),
        event(5, "container_restarted", "high", "restarted web (strike 2)", container="web",
              reason="probe: curl exit 7 | again", restart_count=2),
        event(5.2, "container_escalated", "critical", "web still unhealthy after restart",
              container="web", reason="still unhealthy after the restart"),
        event(7, "container_restarted", "high", "restarted api", host="host-b", container="api",
              reason="probe: HTTP 503"),
        event(7.1, "container_recovered", "medium", "api is healthy", host="host-b",
              container="api"),
        event(8, "container_escalated", "critical", "db restart budget spent", host="host-b",
              container="db", reason="restart budget spent (3 in the last hour)"),
        event(9, "container_acknowledged", "medium", "db taken over by alice", host="host-b",
              container="db", reason="acknowledged by alice"),
        event(10, "db_unreachable", "critical", "the database did not answer: timeout"),
        *(event(11 + i / 10, "deploy_note", "low", f"note {i}") for i in range(7)),
        event(22, "evening_summary", "medium", "an earlier digest of this day"),
        event(-0.1, "container_escalated", "critical", "yesterday's escalation", host="host-c",
              container="cache", reason="yesterday"),
        event(24, "deploy_note", "low", "tomorrow"),
    ]
    execute_many(url, "INSERT INTO episodic_memory (uid, timestamp, event_type, summary, details, "
            "importance, host, source) VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, %s, "
            "'test')", events)
    execute_many(url, "INSERT INTO tasks (job_id, status, created_at, started_at, finished_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            [("backup", "pending", hour(20), None, None),
             ("backup", "pending", hour(21), None, None),
             ("backup", "done", hour(12), hour(12), hour(12.1)),
             ("backup", "running", hour(23), hour(24.5), None),  # started after the day ended
             ("backup", "cancelled", hour(13), None, hour(13.5))])
    execute_many(url, "INSERT INTO outbox (channel, dedup_key, host, title, status, last_error, "
            "created_at) VALUES (%s, %s, 'host-a', 't', %s, %s, %s)",
            [("alerts", "a1", "undeliverable", "HTTP 404: Unknown Webhook", hour(5.3)),
             ("alerts", "a2", "delivered", None, hour(8.1)),
             ("journal", "evening_summary:2026-03-01", "failed", "HTTP 500", hour(22))])


def seed_metrics(url: str, now: datetime) -> None:
    """Rows behind every series of /metrics, as of ``now`` (the database's clock decides
    the 24-hour windows, so ``now`` should be the real time): on test-host, a healthy, a
    struck, an escalated container with a dependant folded into its incident, one
    without a health check, one starting, one stopped and one ignored; a container of
    another host; restarts and escalations; jobs whose latest slot was ok, failed, timed
    out and missed, one held silent; daemons of a running, a silent and a stopped host;
    pending, delivered and undelivered notifications."""
    rows: tuple[tuple[str, dict[str, Any]], ...] = (
            ("web", {}),
            ("db", {"state": "striking", "phase": "striking", "strikes": 1,
                    "health": "unhealthy"}),
            ("queue", {"state": "escalated", "phase": "escalated", "strikes": 3,
                       "health": "unhealthy"}),
            ("cache", {"state": "escalated", "phase": "escalated", "strikes": 3,
                       "health": "unhealthy", "folded_into": "queue"}),
            ("plain", {"has_healthcheck": False, "health": "none"}),
            ("booting", {"health": "starting"}),
            ("stopped", {"status": "exited", "health": "none"}),
            ("skipped", {"supervision": "ignored", "state": "ignored", "health": "none",
                         "has_healthcheck": False}))
    for name, columns in rows:
        add_container(url, name, **{"status": "running", "has_healthcheck": True, **columns})
    add_container(url, "web", host="other-host", status="running", has_healthcheck=True,
                  state="escalated", phase="escalated", strikes=3, health="unhealthy")
    for container, event_type, importance in (
            ("queue", "container_restarted", "high"), ("queue", "container_restarted", "high"),
            ("queue", "container_escalated", "critical"), ("", "daemon_started", "low")):
        add_event(url, now - timedelta(minutes=30), event_type, importance, container=container)
    execute(url, "INSERT INTO jobs (id, silent_since) VALUES ('health_check', NULL), "
            "('morning_status', NULL), ('backup', %s), ('report', NULL)",
            now - timedelta(hours=1))
    for job_id, status, took_s, minutes_ago in (
            ("health_check", "failed", 40.0, 15), ("health_check", "ok", 0.2, 10),
            ("health_check", "ok", 3.0, 5), ("health_check", "skipped", 0.0, 1),
            ("morning_status", "timeout", 700.0, 60), ("backup", "missed", 0.0, 90),
            ("report", "ok", 1.0, 20), ("report", "failed", 2.0, 10)):
        add_run(url, job_id, now - timedelta(minutes=minutes_ago), status, late_s=0,
                took_s=took_s)
    execute(url, "INSERT INTO daemons VALUES ('i-1', 'test-host', 1, 'v', %s, %s, "
            "'running'), ('i-2', 'old-host', 2, 'v', %s, %s, 'running'), "
            "('i-3', 'gone-host', 3, 'v', %s, %s, 'stopped')",
            now - timedelta(days=1), now - timedelta(seconds=3), now - timedelta(days=9),
            now - timedelta(days=2), now - timedelta(days=9), now - timedelta(days=3))
    for key, status, attempts in (("a", "pending", 2), ("b", "pending", 0),
                                  ("c", "undeliverable", 5), ("e", "failed", 1),
                                  ("d", "delivered", 1)):
        execute(url, "INSERT INTO outbox (channel, dedup_key, host, title, status, attempts, "
                "created_at) VALUES ('alerts', %s, 'test-host', 't', %s, %s, "
                "now() - interval '20 minutes')", key, status, attempts)
