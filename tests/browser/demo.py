"""A small fleet's month, written into a database as aegis would have recorded it: three
hosts, an escalated container with a dependant folded into its incident and two more in
an incident (one killed for lack of memory), a container in maintenance,
30 days of restarts and escalations, a day of job runs (one failed, one missed). The
screenshot of docs/ and the browser tests show it; every time is relative to ``now``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import psycopg

# id, trigger, period and offset of its slots in seconds (the daily ones: their UTC time)
JOBS = (("health_check", "every 5m", 300, 0), ("docker_health_check", "every 5m", 300, 0),
        ("morning_status", "at 06:00", 86400, 6 * 3600),
        ("evening_summary", "at 22:00", 86400, 22 * 3600),
        ("memory_cleanup", "at 00:30", 86400, 1800))
PROBE_503 = ("curl: (22) The requested URL returned error: 503\n"
             "upstream connect error or disconnect/reset before headers")


# a row's columns
def _event(conn: psycopg.Connection[Any], at: datetime, event_type: str,  # noqa: PLR0913
           summary: str, importance: str, host: str, **details: Any) -> None:
    conn.execute("INSERT INTO episodic_memory (timestamp, event_type, summary, details, "
                 "importance, host, source) VALUES (%s, %s, %s, %s, %s, %s, 'supervisor')",
                 (at, event_type, summary, json.dumps({**details, "host": host}), importance,
                  host))


def _container(conn: psycopg.Connection[Any], host: str, name: str, **columns: Any) -> None:
    values = {"host": host, "name": name, "image": f"registry.local/{name}:1.4",
              "status": "running", "health": "healthy", "has_healthcheck": True, **columns}
    if "labels" in values:
        values["labels"] = json.dumps(values["labels"])
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    conn.execute(f"INSERT INTO containers ({names}) VALUES ({marks})", list(values.values()))


def seed(dsn: str, now: datetime) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _hosts(conn, now)
        _containers(conn, now)
        _history(conn, now)
        _jobs(conn, now)


def _hosts(conn: psycopg.Connection[Any], now: datetime) -> None:
    for number, (host, age) in enumerate((("web-01", timedelta(seconds=4)),
                                          ("web-02", timedelta(seconds=7)),
                                          ("backup-01", timedelta(hours=3)))):
        conn.execute("INSERT INTO daemons VALUES (%s, %s, %s, '0.1.0', %s, %s, 'running')",
                     (f"demo-{number}", host, 100 + number, now - timedelta(days=9),
                      now - age))


def _containers(conn: psycopg.Connection[Any], now: datetime) -> None:
    _container(conn, "web-01", "payments-api", state="escalated", phase="escalated",
               strikes=3, incident=4, health="unhealthy", strike_at=now - timedelta(minutes=6),
               restarts=[now - timedelta(minutes=8), now - timedelta(minutes=7)],
               last_action="escalate", last_action_at=now - timedelta(minutes=6),
               last_reason="still unhealthy after a restart", labels={"aegis.max-restarts": "2"},
               compose_project="shop", compose_service="payments-api",
               incident_class="unhealthy", affected=["checkout"])
    _container(conn, "web-01", "checkout", state="striking", phase="striking", strikes=1,
               incident=3, health="unhealthy", strike_at=now - timedelta(minutes=5),
               last_action="fold", last_action_at=now - timedelta(minutes=5),
               last_reason="waits for payments-api, whose incident it depends on",
               compose_project="shop", compose_service="checkout",
               incident_class="unhealthy", folded_into="payments-api")
    _container(conn, "web-01", "worker", state="restarting", phase="restarting", strikes=2,
               incident=7, health="unhealthy", strike_at=now - timedelta(seconds=40),
               last_action="restart", last_action_at=now - timedelta(seconds=40),
               last_reason="killed for lack of memory: restarted once", incident_class="oom")
    _container(conn, "web-02", "search", state="striking", phase="striking", strikes=1,
               incident=2, health="unhealthy", strike_at=now - timedelta(seconds=20),
               last_action="strike1", last_action_at=now - timedelta(seconds=20),
               last_reason="health check failing", incident_class="unhealthy")
    _container(conn, "web-02", "nightly-backup", state="maintenance",
               maintenance_until=now + timedelta(hours=2), last_action="maintenance_on",
               last_action_at=now - timedelta(minutes=30))
    for host in ("web-01", "web-02", "backup-01"):
        for number in range(12):
            _container(conn, host, f"app-{number:02d}")
    _event(conn, now - timedelta(minutes=8), "container_restarted",
           "payments-api restarted (strike 2 of 3)", "high", "web-01",
           container="payments-api", incident=4, probe_output=PROBE_503,
           **{"class": "unhealthy"})
    _event(conn, now - timedelta(minutes=6), "container_escalated",
           "payments-api escalated (strike 3 of 3): still unhealthy after a restart",
           "critical", "web-01", container="payments-api", incident=4,
           probe_output=PROBE_503, probe_exit_code=1, **{"class": "unhealthy"})


def _history(conn: psycopg.Connection[Any], now: datetime) -> None:
    """30 days of restarts and escalations, a few a day, and the day's small events."""
    for day in range(30):
        moment = now - timedelta(days=day, hours=3)
        for n in range((day * 7) % 5 + (3 if day % 11 == 2 else 0)):
            _event(conn, moment - timedelta(minutes=17 * n), "container_restarted",
                   f"app-{n:02d} restarted", "high", "web-02", container=f"app-{n:02d}")
        if day % 6 == 1:
            _event(conn, moment, "container_escalated", "app-03 escalated", "critical",
                   "web-01", container="app-03")
    for minutes in range(0, 1440, 45):
        _event(conn, now - timedelta(minutes=minutes), "health_check", "database healthy",
               "low", "web-01")
    _event(conn, now - timedelta(hours=2), "job_failed", "evening_summary failed", "high",
           "web-01", job="evening_summary")


def _jobs(conn: psycopg.Connection[Any], now: datetime) -> None:
    for job_id, trigger, period_s, offset_s in JOBS:
        since_slot_s = (now.timestamp() - offset_s) % period_s
        next_run = now + timedelta(seconds=period_s - since_slot_s)
        conn.execute("INSERT INTO jobs (id, trigger, next_run_at, seen_by, seen_at) "
                     "VALUES (%s, %s, %s, 'demo-0', %s)", (job_id, trigger, next_run, now))
        slots = [now - timedelta(seconds=since_slot_s + period_s * n)
                 for n in range(86400 // period_s)]
        for n, slot in enumerate(slots):
            late_s = 0.004 + (n % 7) * 0.003 + (0.9 if n % 97 == 5 else 0.0)
            status, error = "ok", None
            if job_id == "evening_summary":
                status, error = "failed", ("cannot write the journal file in /journal: "
                                           "Permission denied")
            if job_id == "morning_status":
                status, error = "missed", "no daemon was running at 06:00"
            conn.execute(
                "INSERT INTO job_runs (job_id, scope_key, host, trigger, scheduled_for, "
                "started_at, finished_at, status, error) VALUES (%s, 'web-01', 'web-01', "
                "'schedule', %s, %s, %s, %s, %s)",
                (job_id, slot, slot + timedelta(seconds=late_s),
                 slot + timedelta(seconds=late_s + 0.2 + n % 3), status, error))
