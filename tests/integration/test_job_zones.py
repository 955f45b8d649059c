"""One rule for the zone a job's times are shown in, in ``aegis jobs list`` and ``aegis
jobs history`` alike: the job's own when this process defines it, else the zone the daemon
running it advertised, else AEGIS_TIMEZONE (when none advertised it, or this machine's
time zone database lacks the one advertised)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import psycopg

from aegis import api
from tests.support.cli import run_cli

SLOT = datetime(2026, 7, 1, 3, 0, tzinfo=UTC)


def advertise(url: str, job_id: str, timezone: str) -> None:
    """A job as another (live) daemon advertises it, with a run of its slot."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO daemons (host, instance_id, pid, version, status, "
                     "started_at, last_heartbeat_at) VALUES ('other', 'i-1', 1, 'x', "
                     "'running', now(), now()) ON CONFLICT DO NOTHING")
        conn.execute("INSERT INTO jobs (id, trigger, timezone, next_run_at, seen_by, "
                     "seen_at) VALUES (%s, 'daily at 12:00', %s, %s, 'other', now())",
                     (job_id, timezone, SLOT))
        conn.execute("INSERT INTO job_runs (job_id, scope_key, host, trigger, "
                     "scheduled_for, started_at, finished_at, status) VALUES "
                     "(%s, 'other', 'other', 'schedule', %s, %s, %s, 'ok')",
                     (job_id, SLOT, SLOT, SLOT))


def test_a_job_of_another_daemon_is_shown_in_its_advertised_zone_else_aegis_timezone(
        aegis_env: dict[str, str]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    advertise(url, "tokyo_job", "Asia/Tokyo")
    advertise(url, "far_job", "Mars/Olympus_Mons")
    env = {**aegis_env, "AEGIS_TIMEZONE": "America/New_York", "AEGIS_JOB_MODULES": ""}
    zones = api.connect(api.load_settings(env), migrate=False)
    try:
        found = zones.scheduler.zones_of(["tokyo_job", "far_job", "never_advertised"])
    finally:
        zones.close()
    assert found == {"tokyo_job": ZoneInfo("Asia/Tokyo"),
                     "far_job": ZoneInfo("America/New_York"),
                     "never_advertised": ZoneInfo("America/New_York")}

    listed = run_cli("jobs", "list", env=env)
    history = run_cli("jobs", "history", env=env)
    assert listed.returncode == 0, listed.stderr
    assert history.returncode == 0, history.stderr
    [tokyo_listed] = [line for line in listed.stdout.splitlines() if "tokyo_job" in line]
    [tokyo_run] = [line for line in history.stdout.splitlines() if "tokyo_job" in line]
    assert "2026-07-01 12:00:00 +09:00" in tokyo_listed  # next run and last run
    assert "2026-07-01 12:00:00 +09:00" in tokyo_run
    [far_listed] = [line for line in listed.stdout.splitlines() if "far_job" in line]
    [far_run] = [line for line in history.stdout.splitlines() if "far_job" in line]
    assert "2026-06-30 23:00:00 -04:00" in far_listed
    assert "2026-06-30 23:00:00 -04:00" in far_run
