"""A fleet on one PostgreSQL: ``AEGIS_FLEET_HOSTS`` (default 50) real ``aegis run``
daemons on this machine, each its own host name and AEGIS_HOME, against one embedded
PostgreSQL, for ``AEGIS_FLEET_S`` seconds (default 600) directly and as long again through
a real PgBouncer in transaction mode (Debian's, as the tests start it);
``AEGIS_FLEET_MODES=direct`` or ``pgbouncer`` runs one of the two.

Each daemon runs aegis's own jobs with short intervals (health_check every 30 s, the
fleet's peer_watch every minute) and ``fleet_tick``, a cluster job every 5 s that records
one event per execution. A third of the way in (later if the run is short, so that the
silence can be reported before the end) one daemon is killed with SIGKILL. At the end
every job is paused and, once the pools have shrunk, the connections are sampled again:
the fleet at idle. The benchmark reports, for each mode: the daemons' connections, what
each daemon's budget counts (directly: server connections, from ``pg_stat_activity``;
through PgBouncer: its clients, from its own ``SHOW CLIENTS``; sampled every second: the
median while busy, after the warm-up; the median at idle; the peak), through PgBouncer
also the server connections it holds, commits per second, job start lateness p99 (``started_at -
scheduled_for`` of every run after the warm-up), duplicate cluster slots (a slot of
``fleet_tick`` executed twice), the time from the SIGKILL to the ``peer_silent`` event
about that host, and the database's growth per host per day at this job mix. Goals:
connections at idle <= 2 x hosts + 5, while busy and at the peak <= 4 x hosts + 5,
lateness p99 < 100 ms, no duplicate, the silent peer reported within AEGIS_PEER_TIMEOUT
(3 min) + 60 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

import aegis
from bench.common import (
    bench_home,
    clean_env,
    percentile,
    start_daemon,
    stop_daemon,
    stop_postgres,
)
from bench.report import Figure, report

HOSTS = int(os.environ.get("AEGIS_FLEET_HOSTS", "50"))
MODES = os.environ.get("AEGIS_FLEET_MODES", "direct,pgbouncer").split(",")
DURATION_S = float(os.environ.get("AEGIS_FLEET_S", "600"))
WARMUP_S = min(60.0, DURATION_S / 5)
PEER_TIMEOUT_S = 180.0
PEER_WATCH_S = 60.0  # peer_watch runs every minute
# The SIGKILL: a third of the way in, or later, but early enough for the silence to be
# reported before the end.
KILL_AT_S = max(WARMUP_S, min(DURATION_S / 3, DURATION_S - PEER_TIMEOUT_S - PEER_WATCH_S - 30))
# At the end every job is paused: after the pool's idle time (10 s, one connection closed
# per period) the daemons are idle, and their connections are sampled again.
IDLE_SETTLE_S = 40.0
IDLE_SAMPLE_S = 15.0
GOAL_LATENESS_MS = 100.0
MAX_SERVER_CONNECTIONS = 4 * HOSTS + 50  # room for the direct run's worst case


@dataclass(frozen=True)
class Counts:
    """One sample: the daemons' connections (server connections directly, PgBouncer's
    clients behind it) and the server connections."""

    daemons: int
    server: int


class Sampler:
    """Counts connections once a second: on the server, and through PgBouncer's console
    (``bouncer_admin_url``) its clients, the daemons' side of the pooler."""

    def __init__(self, conn: psycopg.Connection[Any], bouncer_admin_url: str | None) -> None:
        self.conn = conn
        # the console speaks the simple query protocol only: never a prepared statement
        self.console = (psycopg.connect(bouncer_admin_url, autocommit=True,
                                        prepare_threshold=None)
                        if bouncer_admin_url else None)

    def sample(self) -> Counts:
        row = self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type "
                                "= 'client backend' AND pid <> pg_backend_pid()").fetchone()
        server = int(row[0]) if row else 0
        if self.console is None:
            return Counts(daemons=server, server=server)
        cursor = self.console.execute("SHOW CLIENTS")
        names = [column.name for column in cursor.description or ()].index("application_name")
        clients = sum(1 for found in cursor.fetchall()
                      if str(found[names] or "").startswith("aegis:"))
        return Counts(daemons=clients, server=server)

    def close(self) -> None:
        if self.console is not None:
            self.console.close()


@dataclass
class Result:
    mode: str
    peak_connections: int  # the daemons'
    busy_connections: float  # the median of the samples after the warm-up
    idle_connections: float  # the median with every job paused
    server_busy_connections: float  # the server's, median after the warm-up
    commits_per_s: float
    lateness_p99_ms: float
    runs: int
    duplicates: int
    silent_after_s: float | None
    growth_mb_per_host_day: float


def start_server(pgdata: Path) -> str:
    """The embedded server of ``pgdata`` started (or found running) by a process of its
    own, left running, and its DSN: pgserver keeps one server object per process."""
    started = subprocess.run(
        [sys.executable, "-c", "import sys, warnings; warnings.simplefilter('ignore'); "
         "import pgserver; print(pgserver.get_server(sys.argv[1], cleanup_mode=None)"
         ".get_uri())", str(pgdata)], capture_output=True, text=True, check=True)
    return started.stdout.strip().splitlines()[-1]


def server_for_the_fleet(home: Path) -> str:
    """The embedded server, restarted with room for every daemon's connections."""
    dsn = start_server(home / "pgdata")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_SERVER_CONNECTIONS}")
    stop_postgres(home / "pgdata")
    return start_server(home / "pgdata")


def fleet_env(home: Path, mode: str, index: int, database_url: str,
              **extra: str) -> dict[str, str]:
    folder = home / f"{mode}-{index:02d}"
    folder.mkdir(exist_ok=True)
    return clean_env(str(folder), host_name(mode, index), AEGIS_DATABASE_URL=database_url,
                     AEGIS_JOB_MODULES="bench.fleet_jobs", AEGIS_REMEDIATION="off",
                     AEGIS_HEARTBEAT_INTERVAL="5s", AEGIS_JOB__HEALTH_CHECK__EVERY="30s",
                     AEGIS_JOURNAL_DIR=str(folder / "journal"), **extra)


def host_name(mode: str, index: int) -> str:
    return f"fleet-{mode}-{index:02d}"


def run_fleet(mode: str, home: Path, admin_dsn: str, database_url: str,
              bouncer_admin_url: str | None = None, **extra: str) -> Result:
    daemons = [start_daemon(fleet_env(home, mode, index, database_url, **extra))
               for index in range(HOSTS)]
    victim = host_name(mode, HOSTS - 1)
    killed_at: float | None = None
    samples: list[tuple[float, Counts]] = []
    try:
        with psycopg.connect(admin_dsn, autocommit=True,
                             application_name="aegis-bench") as conn:
            sampler = Sampler(conn, bouncer_admin_url)
            size0 = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            commits0 = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname "
                                    "= current_database()").fetchone()
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < DURATION_S:
                samples.append((elapsed, sampler.sample()))
                if killed_at is None and elapsed >= KILL_AT_S:
                    daemons[-1].send_signal(signal.SIGKILL)
                    killed_at = time.time()
                time.sleep(1.0)
            commits1 = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname "
                                    "= current_database()").fetchone()
            size1 = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            lateness = [float(row[0]) for row in conn.execute(
                "SELECT extract(epoch FROM started_at - scheduled_for) * 1000 FROM job_runs "
                "WHERE trigger = 'schedule' AND started_at IS NOT NULL "
                "AND scheduled_for > now() - make_interval(secs => %s)",
                (DURATION_S - WARMUP_S,)).fetchall()]
            duplicates = conn.execute(
                "SELECT count(*) FROM (SELECT details->>'slot' FROM episodic_memory "
                "WHERE event_type = 'fleet_tick' GROUP BY 1 HAVING count(*) > 1) d"
            ).fetchone()
            silent = conn.execute(
                "SELECT extract(epoch FROM min(timestamp)) FROM episodic_memory "
                "WHERE event_type = 'peer_silent' AND details->>'host' = %s",
                (victim,)).fetchone()
            idle = idle_samples(conn, sampler)
            sampler.close()
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                stop_daemon(daemon)
    p99 = percentile(lateness, 0.99)
    grown_mb = ((size1[0] if size1 else 0) - (size0[0] if size0 else 0)) / 1e6
    settled = [counts for at, counts in samples if at >= WARMUP_S]
    return Result(
        mode=mode, peak_connections=max(counts.daemons for _, counts in samples),
        busy_connections=median([counts.daemons for counts in settled]),
        idle_connections=median(idle),
        server_busy_connections=median([counts.server for counts in settled]),
        commits_per_s=((commits1[0] if commits1 else 0) - (commits0[0] if commits0 else 0))
        / DURATION_S,
        lateness_p99_ms=p99, runs=len(lateness),
        duplicates=int(duplicates[0]) if duplicates else 0,
        silent_after_s=(float(silent[0]) - killed_at) if silent and silent[0] is not None
        and killed_at is not None else None,
        growth_mb_per_host_day=grown_mb / HOSTS * 86400 / DURATION_S)


def median(values: list[int]) -> float:
    return float(sorted(values)[len(values) // 2]) if values else 0.0


def idle_samples(conn: psycopg.Connection[Any], sampler: Sampler) -> list[int]:
    """Every job paused (as ``aegis jobs pause`` does), the pools given time to shrink,
    then the daemons' connections sampled every second."""
    conn.execute("UPDATE jobs SET paused = true, paused_at = now(), paused_by = 'bench'")
    time.sleep(IDLE_SETTLE_S)
    found = []
    for _ in range(int(IDLE_SAMPLE_S)):
        found.append(sampler.sample().daemons)
        time.sleep(1.0)
    conn.execute("UPDATE jobs SET paused = false, paused_at = NULL, paused_by = NULL")
    return found


def figures_of(result: Result) -> list[Figure]:
    mode = result.mode
    silent_ok = (result.silent_after_s is not None
                 and result.silent_after_s <= PEER_TIMEOUT_S + 60)
    whose = "server connections" if mode == "direct" else "connections to PgBouncer"
    figures = [
        Figure(f"fleet {mode}: the daemons' {whose} at idle (median)",
               result.idle_connections, "connections", f"<= {2 * HOSTS + 5}",
               result.idle_connections <= 2 * HOSTS + 5),
        Figure(f"fleet {mode}: the daemons' {whose} while busy (median)",
               result.busy_connections, "connections", f"<= {4 * HOSTS + 5}",
               result.busy_connections <= 4 * HOSTS + 5),
        Figure(f"fleet {mode}: the daemons' peak {whose}", result.peak_connections,
               "connections", f"<= {4 * HOSTS + 5}",
               result.peak_connections <= 4 * HOSTS + 5)]
    if mode != "direct":
        figures.append(Figure(f"fleet {mode}: server connections while busy (median)",
                              result.server_busy_connections, "connections"))
    return [
        *figures,
        Figure(f"fleet {mode}: commits per second", result.commits_per_s, "/s"),
        Figure(f"fleet {mode}: job start lateness p99", result.lateness_p99_ms, "ms",
               f"< {GOAL_LATENESS_MS:g} ms", result.lateness_p99_ms < GOAL_LATENESS_MS),
        Figure(f"fleet {mode}: duplicate cluster slots", result.duplicates, "", "= 0",
               result.duplicates == 0),
        Figure(f"fleet {mode}: SIGKILL to peer_silent", result.silent_after_s, "s",
               f"<= {PEER_TIMEOUT_S + 60:g} s", silent_ok),
        Figure(f"fleet {mode}: database growth per host per day",
               result.growth_mb_per_host_day, "MB")]


def main() -> None:
    from tests.support import pgbouncer

    results = []
    with bench_home() as home_text:
        home = Path(home_text)
        dsn = server_for_the_fleet(home)
        with aegis.connect(aegis.load_settings(clean_env(home_text, "fleet-admin",
                                                         AEGIS_DATABASE_URL=dsn))):
            pass  # migrated once, before the daemons start together
        if "direct" in MODES:
            results.append(run_fleet("direct", home, dsn, dsn))
        reason = pgbouncer.unavailable()
        if "pgbouncer" not in MODES:
            pass
        elif reason:
            print(f"fleet through PgBouncer: not run: {reason}")
        else:
            bouncer = pgbouncer.start(dsn, Path(f"/tmp/aegis-bench-pgb-{os.getpid()}"))
            try:
                results.append(run_fleet("pgbouncer", home, dsn, bouncer.url(dsn),
                                         bouncer.admin_url,
                                         AEGIS_DATABASE_POOLER="transaction"))
            finally:
                bouncer.stop()
        with contextlib.suppress(subprocess.SubprocessError):
            stop_postgres(home / "pgdata")
    figures = []
    for result in results:
        print(f"fleet of {HOSTS} hosts, {result.mode}, {DURATION_S:.0f} s: "
              f"the daemons' connections {result.busy_connections:g} busy (median), "
              f"{result.idle_connections:g} idle (median, jobs paused), "
              f"peak {result.peak_connections}; server connections "
              f"{result.server_busy_connections:g} busy; {result.commits_per_s:.0f} "
              f"commits/s, lateness p99 {result.lateness_p99_ms:.1f} ms over {result.runs} "
              f"runs, {result.duplicates} duplicate cluster slots, peer_silent "
              f"{'never' if result.silent_after_s is None else f'{result.silent_after_s:.0f} s'}"
              f" after the SIGKILL, database growth {result.growth_mb_per_host_day:.1f} MB "
              "per host per day")
        figures += figures_of(result)
    report("fleet", figures)


if __name__ == "__main__":
    main()
