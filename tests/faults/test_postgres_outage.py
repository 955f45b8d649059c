"""PostgreSQL stopped for a minute under a running daemon, on a server of this test's own
(the session's shared server is never touched), while (on a private Docker engine) a
container fails: strikes, the restart and the escalation go on, spooled, and are written
back once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.cli import run_cli
from tests.support.containers import BREAKS_FOR_GOOD, HEALTHCHECK
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.engines import PrivateEngine, RestartWatch
from tests.support.postgres import OwnPostgres
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

OUTAGE_S = float(os.environ.get("AEGIS_FAULT_OUTAGE_S", "60"))


def slots_of(url: str, event_type: str) -> Counter[datetime]:
    return Counter(datetime.fromisoformat(r["slot"]) for r in rows(
        url, "SELECT details->>'slot' AS slot FROM episodic_memory WHERE event_type = %s",
        event_type))


def test_a_minute_without_postgres_loses_nothing_and_doubles_nothing(  # noqa: PLR0915
        own_postgres: OwnPostgres, aegis_home: Path, tmp_path: Path, spawn: Spawner,
        optional_engine: PrivateEngine | None) -> None:
    url = own_postgres.url
    docker_env: dict[str, str] = {}
    if optional_engine is not None:
        # healthy until it is told to break; after a restart it stays broken, so the
        # incident runs from strike 1 through the restart to the escalation
        sick = optional_engine.run(BREAKS_FOR_GOOD, name="sick", healthcheck=HEALTHCHECK)
        client = optional_engine.client()
        watch = RestartWatch(client)
        docker_env = {"DOCKER_HOST": optional_engine.url, "AEGIS_REMEDIATION": "on",
                      "AEGIS_STRIKE_INTERVAL": "4s", "AEGIS_RESTART_BACKOFF": "0s"}
    env = daemon_env({"AEGIS_DATABASE_URL": url, "AEGIS_HOME": str(aegis_home),
                      "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
                      "AEGIS_HOST": "test-host", "AEGIS_LOG_FORMAT": "json",
                      "AEGIS_HTTP_ADDR": "off"}, AEGIS_LOG_LEVEL="info", **docker_env)
    spool = aegis_home / "spool.jsonl"
    daemon = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'beat' "
                               "AND status = 'ok'"), what="a first beat")
    if optional_engine is not None:
        wait_for(lambda: rows(url, "SELECT 1 FROM containers WHERE name = 'sick' AND "
                                   "health = 'healthy'"), what="the container supervised")

    down_at = datetime.now(UTC)
    own_postgres.stop()
    if optional_engine is not None:
        sick.exec_run(["rm", "-f", "/healthy"])  # the incident happens entirely offline
    checks = []
    while (datetime.now(UTC) - down_at).total_seconds() < OUTAGE_S:
        time.sleep(5)
        checks.append(run_cli("check", env=env).returncode)
        assert daemon.poll() is None, "the daemon exited during the outage"
    unreachable = run_cli("events", env=env)
    up_at = datetime.now(UTC)
    spooled = [json.loads(line) for line in spool.read_text().splitlines() if line]
    own_postgres.start()

    assert set(checks) == {0}, f"aegis check during the outage: {checks}"
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("aegis: database unreachable")
    assert unreachable.stderr.count("\n") == 1
    kinds = Counter(record["kind"] for record in spooled)
    assert kinds["event"] >= OUTAGE_S / 4, f"host jobs did not keep running: {kinds}"
    assert kinds["job_run"] >= OUTAGE_S / 4, kinds

    wait_for(lambda: spool.stat().st_size == 0, timeout_s=30, what="the spool replayed")
    replayed_at = datetime.now(UTC)
    def runs_after(job: str) -> list[dict[str, Any]]:
        return rows(url, "SELECT 1 FROM job_runs WHERE job_id = %s AND status = 'ok' "
                         "AND scheduled_for > %s", job, replayed_at)

    wait_for(lambda: runs_after("pulse") and runs_after("beat"), what="runs after the outage")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    # every beat spooled during the outage is in the database once, with its run and
    # its one notification
    beats = slots_of(url, "beat_ran")
    assert max(beats.values()) == 1
    spooled_beats = {datetime.fromisoformat(r["details"]["slot"]) for r in spooled
                     if r["kind"] == "event" and r["event_type"] == "beat_ran"}
    assert spooled_beats <= set(beats)
    beat_runs = rows(url, "SELECT scheduled_for FROM job_runs WHERE job_id = 'beat'")
    assert {r["scheduled_for"] for r in beat_runs} >= spooled_beats, "a spooled beat's run"
    messages = rows(url, "SELECT e.details->>'slot' AS slot FROM outbox o JOIN "
                         "episodic_memory e ON e.uid = o.event_uid "
                         "WHERE e.event_type = 'beat_ran'")
    assert len(messages) == sum(beats.values())
    assert len({m["slot"] for m in messages}) == len(messages)

    # the cluster job waited: nothing claimed while nobody could claim (a claim waits up
    # to the 5 s pool timeout for a connection, so one begun just before the database
    # returned carries its start time from before)
    pulses = slots_of(url, "pulse_ran")
    assert max(pulses.values()) == 1
    claimed_inside = rows(url, "SELECT scheduled_for, started_at FROM job_runs WHERE "
                               "job_id = 'pulse' AND started_at BETWEEN %s AND %s",
                          down_at + timedelta(seconds=6), up_at - timedelta(seconds=6))
    assert claimed_inside == [], (down_at, up_at)
    events = Counter(r["event_type"] for r in rows(
        url, "SELECT event_type FROM episodic_memory WHERE event_type LIKE 'daemon_%%'"))
    assert events == {"daemon_started": 1, "daemon_stopped": 1}

    if optional_engine is not None:
        check_offline_incident(url, spooled, watch.stop(), down_at, up_at)
        client.close()


def check_offline_incident(url: str, spooled: list[dict[str, Any]], restarted: Counter[str],
                           down_at: datetime, up_at: datetime) -> None:
    """The whole incident was decided offline, spooled, and written back once."""
    kinds = Counter(r["kind"] for r in spooled)
    assert kinds["container_decision"] >= 2, kinds
    assert restarted == {"sick": 1}, "restarted once, as the protocol says"
    incident = Counter(r["event_type"] for r in rows(
        url, "SELECT event_type FROM episodic_memory WHERE details->>'container' = "
             "'sick' AND timestamp BETWEEN %s AND %s", down_at, up_at))
    assert incident == {"container_unhealthy": 1, "container_restarted": 1,
                        "container_escalated": 1}, incident
    row = rows(url, "SELECT phase, strikes, cardinality(restarts) AS restarts "
                    "FROM containers WHERE name = 'sick'")
    assert row == [{"phase": "escalated", "strikes": 3, "restarts": 1}]
    assert rows(url, "SELECT count(*) AS n FROM outbox WHERE dedup_key LIKE "
                     "'escalation:%%sick%%'") == [{"n": 1}]
