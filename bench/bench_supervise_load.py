"""Daemon CPU and RSS while supervising 50, 200, 500 and 1,000 containers, and what a
sweep costs.

For each size, that many busybox containers with a health check (every 30 s; every 60 s
for 500 and more) are started, then a real ``aegis run`` (embedded PostgreSQL, the events
watcher, a reconciliation sweep every 30 s instead of every 5 minutes; scope ``labeled``,
so other containers on the engine are left alone) runs for a warm-up (past every
container's first probe) and a measured window. CPU is the daemon process's utime +
stime over the window (/proc/PID/stat), RSS its VmRSS at the end. Goals: under 1% of one
core and under 150 MB. While the containers still run, ``AEGIS_BENCH_STRIKE_SAMPLES``
(100) more are made unhealthy one after another, as ``bench_strike_latency`` does: the
event -> strike 1 latency beside them, goal p99 < 20 ms. Then sweeps run in this process
through a client that counts its
calls: the first must be one listing and no inspect, and one that finds nothing changed
must cost under 40 ms of CPU per 1,000 containers (the least of three).
``AEGIS_BENCH_WINDOW_S`` sets the window and ``AEGIS_BENCH_SWEEP`` the sweep's period
(the window is at least that long by default); sizes given as arguments run only those.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from aegis.core.durations import parse_duration_s
from bench.bench_strike_latency import StrikeSampler
from bench.common import (
    clean_env,
    daemon_home,
    percentile,
    remove_container,
    start_daemon,
    stop_daemon,
)
from bench.report import Figure, report

SIZES = (50, 200, 500, 1000)
PROBE_EVERY_S = {50: 30, 200: 30, 500: 60, 1000: 60}
# A sweep that finds nothing changed decides nothing: 40 ms of CPU per 1,000 containers.
GOAL_UNCHANGED_MS_PER_1000 = 40.0
STARTERS = 8  # containers started (and removed) side by side
# The warm-up outlasts the first probe of every container: the window measures steady
# supervision, not the health verdicts (an event and a check each) of containers just
# started.
WARMUP_S = 20.0
# The sweep (the docker_health_check job): every 30 s here, ten times aegis's default.
SWEEP_EVERY = os.environ.get("AEGIS_BENCH_SWEEP", "30s")
# The window holds at least one sweep, so its cost is in the figure.
WINDOW_S = float(os.environ.get("AEGIS_BENCH_WINDOW_S",
                                max(60.0, parse_duration_s(SWEEP_EVERY))))


def sweep_note() -> str:
    """The figures' names say the sweep's period when it is not the benchmark's own."""
    return "" if SWEEP_EVERY == "30s" else f" (sweep every {SWEEP_EVERY})"
GOAL_CPU_PERCENT = 1.0
GOAL_RSS_MB = 150.0
# containers made unhealthy one after another once the window is over, for the event ->
# strike 1 latency beside the host's containers (0: none)
STRIKE_SAMPLES = int(os.environ.get("AEGIS_BENCH_STRIKE_SAMPLES", "100"))
GOAL_STRIKE_P99_MS = 20.0
SCRIPT = "touch /healthy; trap 'exit 0' TERM; while :; do sleep 5; done"


def healthcheck(every_s: int) -> dict[str, Any]:
    return {"test": ["CMD", "/bin/sh", "-c", "test -f /healthy"],
            "interval": every_s * 1_000_000_000, "timeout": 5_000_000_000, "retries": 3}


class Counting:
    """A Docker client whose API calls are counted, by method name."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: dict[str, int] = {}
        self.api = self

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client.api, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        """The wrapped client stays open: the benchmark closes it."""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sweep_calls(home: str, host: str, client: Any) -> tuple[dict[str, int], float]:
    """Reconciliation sweeps, as the docker_health_check job makes them, against the
    daemon's database: the Docker calls the first one made, and the CPU (this thread's,
    in ms; the least of three) of a sweep after it, when nothing changed."""
    import aegis
    from aegis.supervision.service import Supervision

    counting = Counting(client)
    settings = aegis.load_settings({**clean_env(home, host), "AEGIS_DOCKER_SCOPE": "labeled"})
    with aegis.connect(settings, migrate=False) as app:
        supervision = Supervision(client_factory=lambda: counting)
        supervision.sweep(app)
        calls = dict(counting.calls)
        spent = []
        for _ in range(3):
            start = time.thread_time()
            supervision.sweep(app)
            spent.append(1000 * (time.thread_time() - start))
    return calls, min(spent)


@dataclass(frozen=True)
class Load:
    """What supervising one size cost: the daemon's CPU (% of a core) and RSS (MB), the
    event -> strike 1 latencies (ms) beside the containers, and a sweep's Docker calls
    and CPU (ms) when nothing changed."""

    cpu_percent: float
    rss_mb: float
    strikes_ms: list[float]
    delivery_ms: list[float]  # the engine's own delivery of each sample's event
    calls: dict[str, int]
    unchanged_ms: float


def measure(client: Any, image: str, size: int) -> Load:
    run_id = uuid.uuid4().hex[:8]
    made: list[Any] = []

    def run_one(index: int) -> None:
        made.append(client.containers.run(
            image, ["/bin/sh", "-c", SCRIPT], name=f"aegis-load-{run_id}-{index}",
            detach=True, network_mode="none",
            healthcheck=healthcheck(PROBE_EVERY_S.get(size, 30)),
            labels={"aegis.enable": "true", "aegis.test": f"load-{run_id}"}))

    try:
        with ThreadPoolExecutor(STARTERS) as starters:  # the engine starts them side by side
            list(starters.map(run_one, range(size)))
        host = f"load-{run_id}"
        with daemon_home(host, AEGIS_LOG_LEVEL="warning", AEGIS_DOCKER_SCOPE="labeled",
                         AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY=SWEEP_EVERY) as (env, dsn):
            daemon = start_daemon(env)
            try:
                time.sleep(max(WARMUP_S, PROBE_EVERY_S.get(size, 30) + 15))
                start_cpu, start = cpu_s(daemon.pid), time.monotonic()
                time.sleep(WINDOW_S)
                used = cpu_s(daemon.pid) - start_cpu
                percent = 100 * used / (time.monotonic() - start)
                rss = rss_mb(daemon.pid)
                strikes, delivery = strike_samples(client, image, dsn, run_id)
            finally:
                stop_daemon(daemon)
            return Load(percent, rss, strikes, delivery,
                        *sweep_calls(env["AEGIS_HOME"], host, client))
    finally:
        with ThreadPoolExecutor(STARTERS) as removers:
            list(removers.map(remove_container, made))


def strike_samples(client: Any, image: str, dsn: str, run_id: str
                   ) -> tuple[list[float], list[float]]:
    """Event -> strike 1 latencies (ms) of STRIKE_SAMPLES containers made unhealthy one
    after another while the host's containers run (bench_strike_latency's samples), and
    the engine's own delivery of each event (ms)."""
    sampler = StrikeSampler(client, image, dsn,
                            {"aegis.enable": "true", "aegis.bench": f"load-{run_id}"})
    try:
        return sampler.run(STRIKE_SAMPLES)
    finally:
        sampler.close()


def main() -> None:
    from tests.images import build_busybox

    # starting hundreds of containers, the engine may take longer than the 60 s default
    client = docker.from_env(timeout=300)
    image = build_busybox(client)
    sizes = [int(s) for s in sys.argv[1:]] or list(SIZES)
    figures = []
    for size in sizes:
        load = measure(client, image, size)
        calls, unchanged_ms = load.calls, load.unchanged_ms
        percent, rss = load.cpu_percent, load.rss_mb
        listings, inspects = calls.get("containers", 0), calls.get("inspect_container", 0)
        goal_ms = GOAL_UNCHANGED_MS_PER_1000 * size / 1000
        print(f"a sweep of {size} containers: {listings} listing(s), {inspects} "
              f"inspect(s), calls {calls}; a sweep when nothing changed: "
              f"{unchanged_ms:.1f} ms of CPU (goal < {goal_ms:g} ms)")
        figures += [Figure(f"sweep of {size}: listings + inspects", listings + inspects,
                           "calls", "= 1 (one listing)", (listings, inspects) == (1, 0)),
                    Figure(f"sweep of {size} unchanged containers: CPU", unchanged_ms, "ms",
                           f"< {goal_ms:g} ms", unchanged_ms < goal_ms)]
        verdict = "ok" if percent < GOAL_CPU_PERCENT and rss < GOAL_RSS_MB else "MISSED"
        print(f"supervising {size} containers: CPU {percent:.2f}% of one core over "
              f"{WINDOW_S:.0f}s, RSS {rss:.0f} MB (goal < {GOAL_CPU_PERCENT:.0f}% and "
              f"< {GOAL_RSS_MB:.0f} MB: {verdict})")
        figures += [
            Figure(f"daemon CPU at {size} containers{sweep_note()}", percent, "%",
                   f"< {GOAL_CPU_PERCENT:g}%", percent < GOAL_CPU_PERCENT),
            Figure(f"daemon RSS at {size} containers{sweep_note()}", rss, "MB",
                   f"< {GOAL_RSS_MB:g} MB", rss < GOAL_RSS_MB)]
        if load.strikes_ms:
            p99 = percentile(load.strikes_ms, 0.99)
            # each sample's time after the engine delivered its event (to this process's
            # stream, as to the daemon's): aegis's own part
            own_ms = [total - delivered for total, delivered
                      in zip(load.strikes_ms, load.delivery_ms, strict=True)]
            slowest = sorted(zip(load.strikes_ms, load.delivery_ms, strict=True))[-5:]
            print(f"event -> strike 1 beside {size} containers, {len(load.strikes_ms)} "
                  f"samples: p50 {statistics.median(load.strikes_ms):.1f} ms, p95 "
                  f"{percentile(load.strikes_ms, 0.95):.1f} ms, p99 {p99:.1f} ms, max "
                  f"{max(load.strikes_ms):.1f} ms (goal p99 < {GOAL_STRIKE_P99_MS:g} ms); "
                  f"slowest (of which the engine's delivery) "
                  f"{', '.join(f'{v:.0f} ({d:.0f})' for v, d in slowest)} ms; the engine's "
                  f"own delivery of the event, p99 {percentile(load.delivery_ms, 0.99):.1f}"
                  f" ms; after it (aegis's part), p50 {statistics.median(own_ms):.1f} ms, "
                  f"p99 {percentile(own_ms, 0.99):.1f} ms")
            figures += [
                Figure(f"event to strike 1 at {size} containers p50",
                       statistics.median(load.strikes_ms), "ms"),
                Figure(f"event to strike 1 at {size} containers p99", p99, "ms",
                       f"< {GOAL_STRIKE_P99_MS:g} ms", p99 < GOAL_STRIKE_P99_MS),
                Figure(f"event delivery by the engine at {size} containers p99",
                       percentile(load.delivery_ms, 0.99), "ms"),
                Figure(f"strike 1 after the engine's delivery at {size} containers p99",
                       percentile(own_ms, 0.99), "ms")]
    report("supervise_load", figures)


if __name__ == "__main__":
    main()
