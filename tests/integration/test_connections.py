"""The connection budget of a daemon, counted on the server (``pg_stat_activity``, by the
application name ``aegis:HOST:ROLE`` each connection carries) and through a real PgBouncer
in transaction mode (its own ``SHOW CLIENTS``): at most 2 connections when idle (the
pool's one, the listener's one) and 4 when busy (the pool's three, the listener's one).
Through PgBouncer the daemon works with no session state, waking on a poll or on a
direct listening connection."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from aegis.storage.db import Database
from tests.support.daemons import Spawner, daemon_env
from tests.support.pgbouncer import PgBouncer
from tests.support.rows import sql_rows
from tests.support.waiting import wait_for

# counts a server's connections and samples them in windows of real time
pytestmark = pytest.mark.serial
IDLE_BUDGET = 2
BUSY_BUDGET = 4
SETTLE_S = 40  # the pool closes what it opened beyond its minimum after 10 s idle
QUIET_S = 3  # within the idle budget this long in a row: done starting
IDLE_SAMPLE_S = 16
# An operator's daemon at rest, its routine compressed from minutes into seconds so that
# the idle sample spans runs of its jobs, each beside the loop's own queries (and each
# more than the pool's 10 s apart: the pool closes a connection only after a period in
# which it was never needed).
ROUTINE = {"AEGIS_HEARTBEAT_INTERVAL": "10s", "AEGIS_REMEDIATION": "off",
           "AEGIS_JOB__PEER_WATCH__EVERY": "15s", "AEGIS_JOB__HEALTH_CHECK__EVERY": "15s"}


def on_server(admin_url: str, host: str) -> Counter[str]:
    """The daemon's connections to the server, by role (pool, listen)."""
    rows = sql_rows(admin_url, "SELECT application_name AS name FROM pg_stat_activity "
                    "WHERE application_name LIKE %s AND backend_type = 'client backend'",
                    f"aegis:{host}:%")
    return Counter(str(row["name"]).rsplit(":", 1)[1] for row in rows)


def on_pgbouncer(bouncer: PgBouncer, host: str) -> Counter[str]:
    """The daemon's client connections to PgBouncer, by role."""
    with psycopg.connect(bouncer.admin_url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SHOW CLIENTS").fetchall()
    return Counter(str(row["application_name"]).rsplit(":", 1)[1] for row in rows
                   if str(row.get("application_name") or "").startswith(f"aegis:{host}:"))


def sampled(count: Callable[[], Counter[str]], seconds: float) -> list[Counter[str]]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(count())
        time.sleep(0.1)
    return samples


def idle_samples(url: str, host: str, count: Callable[[], Counter[str]]
                 ) -> list[Counter[str]]:
    """Once the daemon is done starting, IDLE_SAMPLE_S of samples, across which its
    routine jobs ran several times."""
    settle(count)
    before = runs_done(url, host)
    samples = sampled(count, IDLE_SAMPLE_S)
    assert runs_done(url, host) - before >= 2, "the routine did not run while sampled"
    return samples


def runs_done(url: str, host: str) -> int:
    return int(sql_rows(url, "SELECT count(*) AS n FROM job_runs WHERE host = %s "
                        "AND status = 'ok'", host)[0]["n"])


def settle(count: Callable[[], Counter[str]]) -> None:
    """Wait until the daemon is done starting: within the idle budget for QUIET_S in a
    row, the pool having closed what its start-up opened."""
    deadline = time.monotonic() + SETTLE_S
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < QUIET_S:
        assert time.monotonic() < deadline, \
            f"the daemon not down to {IDLE_BUDGET} connections within {SETTLE_S}s"
        if sum(count().values()) > IDLE_BUDGET:
            quiet_since = time.monotonic()
        time.sleep(0.1)


def heartbeat_of(url: str, host: str) -> bool:
    return bool(sql_rows(url, "SELECT 1 FROM daemons WHERE host = %s AND status = 'running'",
                         host))


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def busy(spawn: Spawner, env: dict[str, str], url: str, host: str,
         count: Callable[[], Counter[str]]
         ) -> tuple[subprocess.Popen[bytes], list[Counter[str]]]:
    """A daemon with jobs every second and twelve tasks of four jobs for its four
    workers, each task holding a connection for a second (four at once: more than the
    pool may open), its connections sampled while the tasks run; every task done."""
    daemon = spawn(daemon_env(env, AEGIS_HOST=host, AEGIS_WORKERS="4",
                              AEGIS_HOME=f"{env['AEGIS_HOME']}-{host}"))
    wait_for(lambda: heartbeat_of(url, host), 30, "the busy daemon's heartbeat")
    for n in range(12):
        sql_rows(url, "INSERT INTO tasks (job_id, args, requested_by) VALUES "
                 "(%s, jsonb_build_object('n', %s::int, 'seconds', 1, 'hold', true), 'test') "
                 "RETURNING id", f"load_{n % 4 + 1}", n)
    samples = sampled(count, 5)
    wait_for(lambda: sql_rows(url, "SELECT count(*) AS n FROM tasks WHERE status = 'done'")
             [0]["n"] == 12, 60, "the twelve tasks done")
    assert max(sample["pool"] for sample in samples) == 3  # busy indeed: the whole pool
    return daemon, samples


def assert_within(samples: list[Counter[str]], budget: int) -> None:
    worst = max(samples, key=lambda sample: sum(sample.values()))
    assert sum(worst.values()) <= budget, f"{worst} over the budget of {budget}"


def test_a_daemon_holds_two_connections_idle_and_four_busy(
        spawn: Spawner, aegis_env: dict[str, str], database_url: str,
        pg_admin_url: str) -> None:
    idle_daemon = spawn({**aegis_env, **ROUTINE, "AEGIS_HOST": "idle-host"})
    wait_for(lambda: heartbeat_of(database_url, "idle-host"), 30, "the daemon's heartbeat")
    idle = idle_samples(database_url, "idle-host", lambda: on_server(pg_admin_url, "idle-host"))
    assert_within(idle, IDLE_BUDGET)
    assert all(sample["listen"] == 1 for sample in idle), idle  # one listener for all
    stop(idle_daemon)  # else it may take the busy daemon's tasks before it advertises them

    _, samples = busy(spawn, aegis_env, database_url, "busy-host",
                      lambda: on_server(pg_admin_url, "busy-host"))
    assert_within(samples, BUSY_BUDGET)


def test_through_pgbouncer_in_transaction_mode_polling_or_listening_directly(
        spawn: Spawner, aegis_env: dict[str, str], database_url: str,
        pg_admin_url: str, pgbouncer: PgBouncer) -> None:
    pooled = {**aegis_env, "AEGIS_DATABASE_URL": pgbouncer.url(database_url),
              "AEGIS_DATABASE_POOLER": "transaction", "AEGIS_LISTEN_POLL_INTERVAL": "0.5"}
    idle_daemon = spawn({**pooled, **ROUTINE, "AEGIS_HOST": "pooled-idle",
                         "AEGIS_LISTEN_POLL_INTERVAL": "2s"})  # the default
    wait_for(lambda: heartbeat_of(database_url, "pooled-idle"), 30, "the daemon's heartbeat")
    idle = idle_samples(database_url, "pooled-idle",
                        lambda: on_pgbouncer(pgbouncer, "pooled-idle"))
    assert_within(idle, IDLE_BUDGET)
    assert all(sample["listen"] == 0 for sample in idle)  # no LISTEN through the pooler
    assert on_server(pg_admin_url, "pooled-idle")["listen"] == 0
    stop(idle_daemon)

    # polling: the queued tasks are found and run, and the busy daemon keeps its budget
    busy_daemon, samples = busy(spawn, pooled, database_url, "pooled-busy",
                                lambda: on_pgbouncer(pgbouncer, "pooled-busy"))
    assert_within(samples, BUSY_BUDGET - 1)  # the pool only: nothing listens
    stop(busy_daemon)

    # listening on a direct connection beside the pooled ones: a task wakes the daemon,
    # which would otherwise sleep until its next heartbeat, 30 s away
    direct: dict[str, Any] = {**pooled, "AEGIS_LISTEN_DATABASE_URL": database_url,
                              "AEGIS_LISTEN_POLL_INTERVAL": "60s"}
    spawn({**direct, "AEGIS_HOST": "pooled-listen", "AEGIS_HEARTBEAT_INTERVAL": "30",
           "AEGIS_REMEDIATION": "off", "AEGIS_HOME": f"{aegis_env['AEGIS_HOME']}-listen"})
    wait_for(lambda: heartbeat_of(database_url, "pooled-listen"), 30, "the daemon's heartbeat")
    wait_for(lambda: on_server(pg_admin_url, "pooled-listen")["listen"] == 1, 10,
             "one direct listening connection")
    assert on_pgbouncer(pgbouncer, "pooled-listen")["listen"] == 0
    time.sleep(2)  # the loop back asleep after its start
    sql_rows(database_url, "INSERT INTO tasks (job_id, host, requested_by) "
             "VALUES ('health_check', 'pooled-listen', 'test') RETURNING id")
    wait_for(lambda: sql_rows(database_url, "SELECT status FROM tasks WHERE host = "
                              "'pooled-listen'")[0]["status"] == "done", 8,
             "the task, woken by NOTIFY on the direct connection")


def test_brief_overlaps_share_one_pooled_connection_and_lasting_ones_grow_the_pool(
        database_url: str, pg_admin_url: str) -> None:
    db = Database(database_url, name="gate")
    try:
        def queries() -> None:
            for _ in range(200):
                db.probe()  # a few milliseconds each, two threads at once

        together(queries, 2)
        assert on_server(pg_admin_url, "gate")["pool"] == 1

        def holds() -> None:
            with db.transaction() as tx:
                tx.execute("ping")
                time.sleep(1)  # much longer than GROW_AFTER_S

        together(holds, 2)
        assert on_server(pg_admin_url, "gate")["pool"] == 2
    finally:
        db.close()


def together(work: Callable[[], None], threads: int) -> None:
    """``work`` on that many threads at once, until every one is done."""
    running = [threading.Thread(target=work) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
