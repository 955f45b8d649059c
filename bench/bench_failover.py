"""A failover under a running daemon, measured: a primary and its streaming standby
(Debian's PostgreSQL 15, as tests/support/replication.py makes them), a real ``aegis run``
given both in one URL and running the soak's jobs (eight every second, bench/soak_jobs.py),
and beside it a writer committing one row every 10 ms to a table of its own. After a
warm-up the primary is killed (``pg_ctl stop -m immediate``) and the standby promoted at
once, as a failover manager would after deciding; then, polling the promoted standby
every 50 ms:

- how long from the primary's death until the standby accepts writes (``pg_ctl promote``
  returned), until the daemon's first write there (its heartbeat), and from that write
  to the first new row of ``job_runs`` and of ``episodic_memory``;
- once the daemon is stopped, the killed primary is started again alone and every row it
  had committed (events by uid, runs by job, scope and slot, outbox rows by key, the
  writer's rows) is looked up on the promoted standby: the rows lost.

Once asynchronous, once synchronous (``synchronous_standby_names = '*'``,
``synchronous_commit = on``); ``AEGIS_FAILOVER_MODES=sync`` runs one. Goals: the daemon
writes again within 30 s; with a synchronous standby no row is lost. With asynchronous
replication a loss is possible, not certain: on one machine the standby is a few
milliseconds behind, so the writer's last commits are what it shows.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from datetime import datetime
from typing import Any

import psycopg

from bench.common import clean_env, start_daemon, stop_daemon
from bench.report import Figure, report
from tests.support import replication

MODES = os.environ.get("AEGIS_FAILOVER_MODES", "async,sync").split(",")
WARMUP_S = 10.0
AFTER_S = 15.0  # watched after the failover
POLL_S = 0.05
WRITE_EVERY_S = 0.01
GOAL_WRITE_AGAIN_S = 30.0
# each kind of row by its key, whatever its id
KEYS = {
    "events": "SELECT uid::text FROM episodic_memory",
    "runs": "SELECT job_id || '/' || scope_key || '/' || scheduled_for::text FROM job_runs",
    "outbox": "SELECT dedup_key FROM outbox",
    "writer": "SELECT id::text FROM bench_failover_writes",
}


def keys(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {kind: {row[0] for row in conn.execute(query.encode()).fetchall()}
                for kind, query in KEYS.items()}


def first_after(url: str, query: str, since: datetime) -> bool:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
        return bool(conn.execute(query.encode(), (since,)).fetchone())
    return False


class Writer:
    """Commits one row every WRITE_EVERY_S to the primary until it is gone."""

    def __init__(self, url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_failover_writes (id bigint PRIMARY KEY)")
        self.url = url
        self.acknowledged = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.url,
                                                                 autocommit=True) as conn:
            while True:
                conn.execute("INSERT INTO bench_failover_writes VALUES (%s)",
                             (self.acknowledged + 1,))
                self.acknowledged += 1
                time.sleep(WRITE_EVERY_S)

    def join(self) -> None:
        self._thread.join(10)


def seconds_until(condition: Any, start: float, timeout_s: float = 60.0) -> float | None:
    """Seconds from ``start`` (monotonic) until ``condition()`` held, polled every
    POLL_S; None if it did not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic() - start
        time.sleep(POLL_S)
    return None


def run_mode(mode: str) -> list[Figure]:
    pair = replication.start_pair(synchronous=mode == "sync")
    try:
        with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
            env = clean_env(home, AEGIS_DATABASE_URL=pair.url,
                            AEGIS_JOB_MODULES="bench.soak_jobs", AEGIS_REMEDIATION="off",
                            AEGIS_HEARTBEAT_INTERVAL="1", AEGIS_LABEL_JOBS="false")
            daemon = start_daemon(env)
            try:
                return failover(mode, pair)
            finally:
                stop_daemon(daemon)
    finally:
        pair.remove()


def failover(mode: str, pair: replication.Replicated) -> list[Figure]:
    old, new = pair.primary.url(), pair.standby.url()
    writer = Writer(old)
    time.sleep(WARMUP_S)
    with psycopg.connect(old, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        switch_at: datetime = row[0]
    died_at = pair.fail_over()
    promoted_s = time.monotonic() - died_at
    writer.join()

    def wrote(query: str) -> Any:
        return lambda: first_after(new, query, switch_at)

    heartbeat_s = seconds_until(wrote("SELECT 1 FROM daemons WHERE last_heartbeat_at > %s"),
                                died_at)
    first_write = time.monotonic()
    run_s = seconds_until(wrote("SELECT 1 FROM job_runs WHERE started_at > %s"), first_write)
    event_s = seconds_until(wrote("SELECT 1 FROM episodic_memory WHERE timestamp > %s"),
                            first_write)
    time.sleep(AFTER_S)
    return figures(mode, pair, promoted_s, heartbeat_s, (run_s, event_s), writer)


def figures(mode: str, pair: replication.Replicated, promoted_s: float,  # noqa: PLR0913
            heartbeat_s: float | None, firsts: tuple[float | None, float | None],
            writer: Writer) -> list[Figure]:
    # every figure of one failover, for one report line
    after = keys(pair.standby.url())
    before = keys(pair.old_primary_alone().url())
    # the writer's rows it was told were committed (a row the primary wrote as it died,
    # unacknowledged, is not a committed row lost)
    before["writer"] = {key for key in before["writer"] if int(key) <= writer.acknowledged}
    lost = {kind: len(before[kind] - after[kind]) for kind in KEYS}
    aegis_lost = lost["events"] + lost["runs"] + lost["outbox"]
    run_s, event_s = firsts
    print(f"failover {mode}: standby promoted {promoted_s:.2f} s after the primary died; "
          f"the daemon's first write there after {_s(heartbeat_s)}, then its first new "
          f"run after {_s(run_s)} and event after {_s(event_s)}; lost: {lost} "
          f"(the writer had {writer.acknowledged} commits acknowledged)")
    sync = mode == "sync"
    return [
        Figure(f"failover {mode}: primary death to standby promoted", promoted_s, "s"),
        Figure(f"failover {mode}: primary death to the daemon's first write", heartbeat_s,
               "s", f"< {GOAL_WRITE_AGAIN_S:g} s",
               heartbeat_s is not None and heartbeat_s < GOAL_WRITE_AGAIN_S),
        Figure(f"failover {mode}: first write to first new job_runs row", run_s, "s"),
        Figure(f"failover {mode}: first write to first new episodic_memory row", event_s, "s"),
        Figure(f"failover {mode}: aegis rows lost (events, runs, outbox)", aegis_lost, "rows",
               "0" if sync else "", aegis_lost == 0 if sync else None),
        Figure(f"failover {mode}: writer rows lost (one commit per 10 ms)", lost["writer"],
               "rows", "0" if sync else "", lost["writer"] == 0 if sync else None),
    ]


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def main() -> None:
    reason = replication.missing_postgresql()
    if reason is not None:
        print(f"failover: not measured ({reason})")
        report("failover", [])
        return
    measured: list[Figure] = []
    for mode in MODES:
        measured += run_mode(mode)
    report("failover", measured)


if __name__ == "__main__":
    main()
