"""Label jobs at scale: ``AEGIS_LABEL_BENCH_CONTAINERS`` (200) busybox containers, each
declaring one job every minute in its labels (``aegis.job.tick.schedule=@every 1m``),
under a real ``aegis run`` (embedded PostgreSQL, AEGIS_WORKERS=64) for
``AEGIS_LABEL_BENCH_S`` (600 s) after a warm-up.

Start lateness is from a run's slot to its command starting in the container, the exec
included: the command prints the kernel's uptime (``/proc/uptime``, shared by the host and
every container, 10 ms steps), turned into wall-clock time with the host's own. ``@every``
is spread: each job runs at its own second of the minute (``triggers.spread``). Every
slot of every job in the window is checked in ``job_runs``: run once (``ok``), never
twice, none missed. The daemon's CPU is its utime + stime over the window. Goals: p99 <
250 ms, 0 duplicate and 0 missed slots. For context, the engine alone: one exec in each
container at one instant (docker-py, no aegis), its lateness to the commands' start: the
floor of any runner that started them all in the same second; and one exec at a time,
the floor of one job alone in its second. ``python -m bench label_jobs`` runs
it; at a small scale: ``AEGIS_LABEL_BENCH_CONTAINERS=20 AEGIS_LABEL_BENCH_S=120 python -m
bench label_jobs``.
"""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import docker
import psycopg
from psycopg.rows import dict_row

from aegis.scheduling.triggers import Every, spread
from bench.bench_supervise_load import cpu_s, rss_mb
from bench.common import daemon_home, percentile, start_daemon, stop_daemon
from bench.report import Figure, report

CONTAINERS = int(os.environ.get("AEGIS_LABEL_BENCH_CONTAINERS", "200"))
WINDOW_S = float(os.environ.get("AEGIS_LABEL_BENCH_S", "600"))
PERIOD_S = 60
GOAL_P99_MS = 250.0
STARTERS = 8
SCRIPT = "trap 'exit 0' TERM; while :; do sleep 5 & wait; done"
LABELS = {"aegis.job.tick.schedule": "@every 1m", "aegis.job.tick.command": "cat /proc/uptime"}


def boot_time_s() -> float:
    """The wall-clock time the kernel's uptime counts from."""
    with open("/proc/uptime", encoding="ascii") as uptime:
        return time.time() - float(uptime.read().split()[0])


def slots_between(job_id: str, start: datetime, end: datetime) -> list[datetime]:
    """The job's slots after ``start`` whose run has had a whole period before ``end``:
    ``@every 1m`` is spread, each job its own second of the minute (triggers.spread)."""
    trigger = spread(Every(PERIOD_S), job_id)
    found = []
    slot = trigger.next_after(start)
    while slot is not None and slot + timedelta(seconds=PERIOD_S) <= end:
        found.append(slot)
        slot = trigger.next_after(slot)
    return found


def judge(dsn: str, job_ids: list[str], start: datetime, end: datetime, boot_s: float
          ) -> dict[str, Any]:
    wanted = {(job_id, slot) for job_id in job_ids
              for slot in slots_between(job_id, start, end)}
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        rows = [row for row in conn.execute(
            "SELECT job_id, scheduled_for, started_at, status, result FROM job_runs "
            "WHERE job_id = ANY(%s) AND scheduled_for > %s AND scheduled_for < %s",
            (job_ids, start, end)).fetchall()
            if (row["job_id"], row["scheduled_for"]) in wanted]
    seen: dict[tuple[str, datetime], int] = {}
    lateness_ms, claimed_ms = [], []
    for row in rows:
        key = (row["job_id"], row["scheduled_for"])
        seen[key] = seen.get(key, 0) + 1
        output = (row["result"] or {}).get("output") or ""
        if row["status"] == "ok" and output.split():
            started = boot_s + float(output.split()[0])
            lateness_ms.append(1000 * (started - row["scheduled_for"].timestamp()))
            claimed_ms.append(1000 * (row["started_at"] - row["scheduled_for"]).total_seconds())
    ok = {(r["job_id"], r["scheduled_for"]) for r in rows if r["status"] == "ok"}
    return {"slots": len(wanted), "runs": len(rows),
            "duplicates": sum(n - 1 for n in seen.values() if n > 1),
            "missed": len(wanted - ok), "p50_ms": percentile(lateness_ms, 0.5),
            "p99_ms": percentile(lateness_ms, 0.99), "max_ms": max(lateness_ms, default=0.0),
            "claimed_p99_ms": percentile(claimed_ms, 0.99)}


def engine_alone(containers: list[Any], boot_s: float) -> tuple[float, float]:
    """p50 and p99 (ms) from one instant to the start of a command exec'd in each of
    ``containers`` at that instant, side by side, through one shared client."""
    import threading

    from aegis.supervision.docker import docker_client

    client = docker_client(timeout_s=60, max_pool_size=len(containers))
    gate = threading.Barrier(len(containers) + 1)
    lateness_ms: list[float] = []

    def one(container: Any) -> None:
        gate.wait()
        exec_id = client.api.exec_create(container.id, ["cat", "/proc/uptime"])["Id"]
        output = client.api.exec_start(exec_id).decode()
        lateness_ms.append(1000 * (boot_s + float(output.split()[0]) - instant))

    threads = [threading.Thread(target=one, args=(c,)) for c in containers]
    for thread in threads:
        thread.start()
    instant = time.time()
    gate.wait()
    for thread in threads:
        thread.join()
    client.close()
    return percentile(lateness_ms, 0.5), percentile(lateness_ms, 0.99)


def engine_one_by_one(containers: list[Any], boot_s: float) -> float:
    """p99 (ms) from asking to the command's start, one exec at a time on an engine doing
    nothing else: the floor of a job whose slot it shares with no other (``@every`` jobs
    are spread over their period)."""
    from aegis.supervision.docker import docker_client

    client = docker_client(timeout_s=60)
    lateness_ms = []
    for container in containers[:50]:
        asked = time.time()
        exec_id = client.api.exec_create(container.id, ["cat", "/proc/uptime"])["Id"]
        output = client.api.exec_start(exec_id).decode()
        lateness_ms.append(1000 * (boot_s + float(output.split()[0]) - asked))
    client.close()
    return percentile(lateness_ms, 0.99)


def measure(client: Any, image: str) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    made: list[Any] = []

    def run_one(index: int) -> None:
        made.append(client.containers.run(
            image, ["/bin/sh", "-c", SCRIPT], name=f"aegis-labeljobs-{run_id}-{index}",
            detach=True, network_mode="none", labels={**LABELS, "aegis.test": run_id}))

    try:
        with ThreadPoolExecutor(STARTERS) as starters:
            list(starters.map(run_one, range(CONTAINERS)))
        job_ids = [f"{container.name}.tick" for container in made]
        alone = engine_alone(made, boot_time_s())
        one_by_one = engine_one_by_one(made, boot_time_s())
        with daemon_home(f"labeljobs-{run_id}", AEGIS_WORKERS="64",
                         AEGIS_REMEDIATION="off", AEGIS_LOG_LEVEL="warning") as (env, dsn):
            daemon = start_daemon(env)
            try:
                time.sleep(20)  # every job registered, none of its slots measured yet
                start, start_cpu, started = datetime.now(UTC), cpu_s(daemon.pid), \
                    time.monotonic()
                time.sleep(WINDOW_S)
                cpu_percent = 100 * (cpu_s(daemon.pid) - start_cpu) / (
                    time.monotonic() - started)
                rss = rss_mb(daemon.pid)
                end = datetime.now(UTC)
            finally:
                stop_daemon(daemon)
            return {**judge(dsn, job_ids, start, end, boot_time_s()), "cpu": cpu_percent,
                    "rss": rss, "alone_p50_ms": alone[0], "alone_p99_ms": alone[1],
                    "single_p99_ms": one_by_one}
    finally:
        with ThreadPoolExecutor(STARTERS) as removers:
            list(removers.map(lambda container: container.remove(force=True), made))


def main() -> None:
    from tests.images import build_busybox

    client = docker.from_env()
    result = measure(client, build_busybox(client))
    lateness_ok = result["p99_ms"] < GOAL_P99_MS
    print(f"{CONTAINERS} containers, a job each every minute, {WINDOW_S:.0f} s: "
          f"{result['slots']} slots, {result['runs']} runs, {result['duplicates']} "
          f"duplicate(s), {result['missed']} missed; start lateness p50 "
          f"{result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max "
          f"{result['max_ms']:.0f} ms, of which claimed by p99 {result['claimed_p99_ms']:.0f} "
          f"ms (goal p99 < {GOAL_P99_MS:.0f} ms: "
          f"{'ok' if lateness_ok else 'MISSED'}); daemon CPU {result['cpu']:.1f}% of one "
          f"core, RSS {result['rss']:.0f} MB; the engine alone, {CONTAINERS} execs at one "
          f"instant: p50 {result['alone_p50_ms']:.0f} ms, p99 {result['alone_p99_ms']:.0f} ms; "
          f"one exec at a time: p99 {result['single_p99_ms']:.0f} ms")
    name = f"label jobs at {CONTAINERS} containers"
    report("label_jobs", [
        Figure(f"{name}: start lateness p50", result["p50_ms"], "ms"),
        Figure(f"{name}: start lateness p99", result["p99_ms"], "ms",
               f"< {GOAL_P99_MS:.0f} ms", lateness_ok),
        Figure(f"{name}: slot claimed, lateness p99", result["claimed_p99_ms"], "ms"),
        Figure(f"{name}: duplicate slots", result["duplicates"], "slots", "0",
               result["duplicates"] == 0),
        Figure(f"{name}: missed slots", result["missed"], "slots", "0",
               result["missed"] == 0 and result["slots"] > 0),
        Figure(f"{name}: daemon CPU", result["cpu"], "%"),
        Figure(f"{name}: daemon RSS", result["rss"], "MB"),
        Figure(f"{name}: the engine alone, all at one instant, exec lateness p99",
               result["alone_p99_ms"], "ms"),
        Figure(f"{name}: the engine alone, one exec at a time, lateness p99",
               result["single_p99_ms"], "ms")])


if __name__ == "__main__":
    main()
