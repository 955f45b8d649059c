"""A failover under a running daemon, measured: a primary and its streaming standby
(Debian's PostgreSQL 15, as tests/support/replication.py makes them), a real ``aegis run``
given both in one URL and running the soak's jobs (eight every second, bench/soak_jobs.py),
on each of two hosts,
and beside it a writer committing one row every 10 ms to a table of its own. After a
warm-up the primary is killed (``pg_ctl stop -m immediate``) and the standby promoted at
once, as a failover manager would after deciding; then, polling the promoted standby
every 50 ms:

- how long from the primary's death until the standby accepts writes (``pg_ctl promote``
  returned), until both daemons wrote there (their heartbeats), and from then
  to the first new row of ``job_runs`` and of ``episodic_memory``;
- once the daemon is stopped, the killed primary is started again alone and every row it
  had committed (events by uid, runs by job, scope and slot, outbox rows by key, the
  writer's rows) is looked up on the promoted standby: the rows lost.

Three modes (``AEGIS_FAILOVER_MODES=sync`` runs one): ``async`` (PostgreSQL's default),
``sync`` (``synchronous_standby_names = '*'``, ``synchronous_commit = on``), and
``lagging``: asynchronous, with the standby cut off from the primary LAG_S before the
primary dies (as across a broken link), so that what asynchronous replication can lose
shows; on one machine an asynchronous standby is otherwise microseconds behind. Also
counted: the cluster job's slots that ran twice (its events, one per execution, by
slot) and the jobs that ran again after the failover (a run row whose finish was lost
must not hold its job up). Goals: the daemon writes again within 30 s; every job runs
again; with a synchronous standby no row is lost and no slot runs twice.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from bench import soak_jobs
from bench.common import clean_env, start_daemon, stop_daemon
from bench.report import Figure, report
from tests.support import replication

MODES = os.environ.get("AEGIS_FAILOVER_MODES", "async,sync,lagging").split(",")
LAG_S = 2.0
HOSTS = ("bench-a", "bench-b")  # two daemons, so the cluster job's slots are contested
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
    daemons = []
    try:
        with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
            for host in HOSTS:
                env = clean_env(f"{home}/{host}", host, AEGIS_DATABASE_URL=pair.url,
                                AEGIS_JOB_MODULES="bench.soak_jobs", AEGIS_REMEDIATION="off",
                                AEGIS_HEARTBEAT_INTERVAL="1", AEGIS_LABEL_JOBS="false")
                daemons.append(start_daemon(env))
            try:
                return failover(mode, pair)
            finally:
                for daemon in daemons:
                    stop_daemon(daemon)
    finally:
        pair.remove()


def failover(mode: str, pair: replication.Replicated) -> list[Figure]:
    old, new = pair.primary.url(), pair.standby.url()
    writer = Writer(old)
    time.sleep(WARMUP_S)
    if mode == "lagging":
        pair.cut_off()
        time.sleep(LAG_S)
    with psycopg.connect(old, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        switch_at: datetime = row[0]
    died_at = pair.fail_over()
    promoted_s = time.monotonic() - died_at
    writer.join()

    def wrote(query: str) -> Any:
        return lambda: first_after(new, query, switch_at)

    heartbeat_s = seconds_until(wrote(
        f"SELECT 1 FROM daemons WHERE last_heartbeat_at > %s HAVING count(DISTINCT host) = "
        f"{len(HOSTS)}"), died_at)
    first_write = time.monotonic()
    run_s = seconds_until(wrote("SELECT 1 FROM job_runs WHERE started_at > %s"), first_write)
    event_s = seconds_until(wrote("SELECT 1 FROM episodic_memory WHERE timestamp > %s"),
                            first_write)
    time.sleep(AFTER_S)
    repeats = Repeats.of(new, switch_at)
    return figures(mode, pair, promoted_s, heartbeat_s, (run_s, event_s), writer) + \
        repeats.figures(mode)


@dataclass(frozen=True)
class Repeats:
    """What ran twice, and which jobs ran again, after the failover."""

    twice: int  # slots of the cluster job executed twice
    jobs_again: int  # jobs with a run finished ok, scheduled after the failover
    jobs: int

    @classmethod
    def of(cls, url: str, switch_at: datetime) -> Repeats:
        with psycopg.connect(url, autocommit=True) as conn:
            twice = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM episodic_memory WHERE event_type = "
                "'soak_tick' AND summary = 'soak_0 ran' GROUP BY details->>'slot' "
                "HAVING count(*) > 1) AS repeated").fetchone()
            again = conn.execute(
                "SELECT count(DISTINCT job_id) FROM job_runs WHERE job_id LIKE 'soak_%%' "
                "AND status = 'ok' AND scheduled_for > %s", (switch_at,)).fetchone()
        assert twice is not None
        assert again is not None
        return cls(int(twice[0]), int(again[0]), soak_jobs.JOBS)

    def figures(self, mode: str) -> list[Figure]:
        print(f"failover {mode}: cluster slots run twice {self.twice}; jobs running again "
              f"{self.jobs_again} of {self.jobs}")
        sync = mode == "sync"
        return [
            Figure(f"failover {mode}: cluster slots run twice", self.twice, "slots",
                   "0" if sync else "", self.twice == 0 if sync else None),
            Figure(f"failover {mode}: jobs running again", self.jobs_again, "jobs",
                   f"{self.jobs}", self.jobs_again == self.jobs),
        ]


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
          f"both daemons wrote there after {_s(heartbeat_s)}, then the first new "
          f"run after {_s(run_s)} and event after {_s(event_s)}; lost: {lost} "
          f"(the writer had {writer.acknowledged} commits acknowledged)")
    sync = mode == "sync"
    return [
        Figure(f"failover {mode}: primary death to standby promoted", promoted_s, "s"),
        Figure(f"failover {mode}: primary death to both daemons writing", heartbeat_s,
               "s", f"< {GOAL_WRITE_AGAIN_S:g} s",
               heartbeat_s is not None and heartbeat_s < GOAL_WRITE_AGAIN_S),
        Figure(f"failover {mode}: both writing to first new job_runs row", run_s, "s"),
        Figure(f"failover {mode}: both writing to first new episodic_memory row", event_s, "s"),
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
