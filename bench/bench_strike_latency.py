"""Strike latency: from Docker's ``health_status: unhealthy`` event to strike 1 recorded.

The events watcher runs against the real engine and a real PostgreSQL (embedded); 20
busybox containers are made unhealthy one after another. Latency is Docker's event time
(timeNano) to the moment the ``container_unhealthy`` row is visible to another connection
(polled every 2 ms). Goal: p99 < 100 ms.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker

import aegis
from aegis.watcher import Watcher
from bench.report import Figure, report

CONTAINERS = 20
GOAL_P99_MS = 100.0
SCRIPT = "touch /healthy; trap 'exit 0' TERM; while :; do sleep 0.1; done"
HEALTHCHECK = {"test": ["CMD", "/bin/sh", "-c", "test -f /healthy"],
               "interval": 300_000_000, "timeout": 2_000_000_000, "retries": 1}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait(predicate: Any, timeout_s: float, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step_s)
    raise RuntimeError("timed out")


def measure(image: str) -> list[float]:
    client = docker.from_env()
    run_id = uuid.uuid4().hex[:8]
    made: list[Any] = []
    latencies_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="aegis-bench-") as home:
        settings = aegis.load_settings({"AEGIS_HOME": str(Path(home)), "AEGIS_HOST": "bench",
                                        "AEGIS_HTTP_ADDR": "off", "AEGIS_LOG_LEVEL": "error"})
        with aegis.connect(settings) as app:
            watcher = Watcher(app, own_ids=frozenset())
            stop = threading.Event()
            thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
            thread.start()
            watcher.connected.wait(10)
            try:
                for index in range(CONTAINERS):
                    made.append(client.containers.run(
                        image, ["/bin/sh", "-c", SCRIPT], name=f"aegis-bench-{run_id}-{index}",
                        detach=True, network_mode="none", healthcheck=HEALTHCHECK,
                        labels={"aegis.test": f"bench-{run_id}"}))
                for container in made:
                    wait(lambda c=container: client.api.inspect_container(c.id)["State"]
                         .get("Health", {}).get("Status") == "healthy", 20)
                for container in made:
                    since = int(time.time()) - 1
                    container.exec_run(["rm", "-f", "/healthy"])
                    seen: list[float] = []

                    def recorded(name: str = container.name, seen: list[float] = seen) -> bool:
                        found = app.memory.query(since="1h", event_type="container_unhealthy")
                        if any(e.details.get("container") == name for e in found):
                            seen.append(time.time())
                            return True
                        return False

                    wait(recorded, 20, step_s=0.002)
                    events = client.api.events(
                        since=since, until=int(time.time()) + 1, decode=True,
                        filters={"container": container.id})
                    unhealthy = [e for e in events
                                 if str(e.get("status", "")).startswith("health_status")
                                 and "unhealthy" in e["status"]]
                    event_s = unhealthy[0]["timeNano"] / 1e9
                    latencies_ms.append((seen[0] - event_s) * 1000)
            finally:
                stop.set()
                thread.join(10)
                for container in made:
                    container.remove(force=True)
    return latencies_ms


def main() -> None:
    import structlog

    from tests.images import build_busybox

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    client = docker.from_env()
    image = build_busybox(client)
    latencies = measure(image)
    p99 = percentile(latencies, 0.99)
    verdict = "ok" if p99 < GOAL_P99_MS else "MISSED"
    print(f"unhealthy event -> strike 1 recorded over {len(latencies)} containers: "
          f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(latencies):.1f} ms (goal p99 < {GOAL_P99_MS:.0f} ms: {verdict})")
    report("strike_latency", [
        Figure("event-to-strike latency p50", statistics.median(latencies), "ms"),
        Figure("event-to-strike latency p99", p99, "ms", f"< {GOAL_P99_MS:.0f} ms",
               p99 < GOAL_P99_MS)])


if __name__ == "__main__":
    main()
