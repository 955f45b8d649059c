"""The daemon's own CPU and memory while it supervises 50, then 200 containers.

A real ``aegis run`` (embedded PostgreSQL) watches labelled busybox containers with a
health check every 30 s; the sweep runs every 30 s. After a 20 s settle, CPU (user +
system of the daemon process over wall time) and RSS are sampled for 60 s.
Goals: under 5% of one core and under 150 MB at 200 containers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.bench_soak import IMAGE, REPO, proc_sample
from bench.report import Figure, report

COUNTS = (50, 200)
SETTLE_S = 20.0
WINDOW_S = float(os.environ.get("AEGIS_BENCH_WINDOW_S", "60"))
GOAL_CPU_PERCENT = 5.0
GOAL_RSS_MB = 150.0
SCRIPT = "touch /tmp/ok; trap 'exit 0' TERM; while :; do sleep 1; done"


def measure(client: Any, count: int, run_id: str) -> dict[str, float]:
    made = []
    with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
        try:
            for index in range(count):
                made.append(client.containers.run(
                    IMAGE, ["/bin/sh", "-c", SCRIPT], name=f"aegis-bench-{run_id}-{index}",
                    detach=True, network_mode="none", stop_signal="SIGKILL",
                    labels={"aegis.enable": "true", "aegis.bench": run_id},
                    healthcheck={"test": ["CMD", "test", "-f", "/tmp/ok"],
                                 "interval": 30_000_000_000, "timeout": 2_000_000_000,
                                 "retries": 1}))
            env = {**{k: v for k, v in os.environ.items()
                      if not k.startswith(("AEGIS_", "POSTGRES_", "DISCORD_"))},
                   "AEGIS_HOME": home, "AEGIS_HOST": "bench", "AEGIS_HTTP_ADDR": "off",
                   "AEGIS_LOG_LEVEL": "error", "AEGIS_DOCKER_SCOPE": "labeled",
                   "AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY": "30s"}
            daemon = subprocess.Popen([sys.executable, "-m", "aegis", "run"], env=env,
                                      cwd=REPO, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                time.sleep(SETTLE_S)
                _, _, cpu_start = proc_sample(daemon.pid)
                started = time.monotonic()
                rss_kb = []
                while time.monotonic() - started < WINDOW_S:
                    rss, _, cpu_s = proc_sample(daemon.pid)
                    rss_kb.append(rss)
                    time.sleep(2)
                wall_s = time.monotonic() - started
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                subprocess.run([sys.executable, "-c", "import pgserver,sys; pgserver."
                                "get_server(sys.argv[1], cleanup_mode='stop').cleanup()",
                                str(Path(home) / "pgdata")], check=False,
                               capture_output=True, timeout=60)
        finally:
            for container in made:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
    return {"cpu_percent": 100 * (cpu_s - cpu_start) / wall_s,
            "rss_mb": max(rss_kb) / 1024}


def main() -> None:
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        print(f"containers: not measured ({exc}); run tests/ensure_docker.sh and a Docker "
              "test once to build the busybox image")
        report("containers", [])
        return
    run_id = uuid.uuid4().hex[:8]
    figures = []
    for count in COUNTS:
        result = measure(client, count, run_id)
        cpu_ok = result["cpu_percent"] < GOAL_CPU_PERCENT
        rss_ok = result["rss_mb"] < GOAL_RSS_MB
        print(f"{count} containers: daemon CPU {result['cpu_percent']:.2f}% of one core, "
              f"RSS max {result['rss_mb']:.1f} MB")
        figures += [
            Figure(f"daemon CPU at {count} containers", result["cpu_percent"], "%",
                   f"< {GOAL_CPU_PERCENT:g}%", cpu_ok),
            Figure(f"daemon RSS at {count} containers", result["rss_mb"], "MB",
                   f"< {GOAL_RSS_MB:g} MB", rss_ok)]
    client.close()
    report("containers", figures)


if __name__ == "__main__":
    main()
