"""Strike latency: from Docker's ``health_status: unhealthy`` event to strike 1 recorded.

A real ``aegis run`` supervises the local engine (labeled scope, observe mode) against an
embedded PostgreSQL, with ``AEGIS_STRIKE_BACKGROUND`` (default 20) supervised containers
probed at Docker's default 30 s interval beside it. ``AEGIS_STRIKE_SAMPLES`` (default 100)
containers are then made unhealthy one after another, each with a 0.3 s probe so it turns
quickly. Latency is the event's own time (``timeNano``) to the moment the
``container_unhealthy`` row is committed, which the benchmark hears through a NOTIFY from
a trigger it adds to its own database (no polling, so the measurement costs nothing while
it waits). Goal: p99 < 100 ms.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import uuid
from typing import Any

import docker
import psycopg

from bench.common import daemon_home, percentile, start_daemon, stop_daemon
from bench.report import Figure, report
from tests.support.containers import HEALS, HEALTHCHECK

SAMPLES = int(os.environ.get("AEGIS_STRIKE_SAMPLES", "100"))
BACKGROUND = int(os.environ.get("AEGIS_STRIKE_BACKGROUND", "20"))
GOAL_P99_MS = 100.0
SCRIPT = HEALS  # healthy while /healthy exists
FAST_PROBE = HEALTHCHECK  # test -f /healthy every 0.3 s
DEFAULT_PROBE = {**HEALTHCHECK, "interval": 30_000_000_000, "retries": 3}  # Docker's 30 s
CHANNEL = "aegis_bench_strike"
# Bench instrumentation only, in the benchmark's own database: one NOTIFY per strike 1,
# delivered when the row's transaction commits.
TRIGGER = f"""
CREATE FUNCTION bench_strike_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.details->>'container');
    RETURN NEW;
END $$;
CREATE TRIGGER bench_strike_notify AFTER INSERT ON episodic_memory FOR EACH ROW
    WHEN (NEW.event_type = 'container_unhealthy') EXECUTE FUNCTION bench_strike_notify();
"""


def wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise SystemExit(f"strike latency: {what} did not happen within {timeout_s:.0f}s")


def health(client: Any, container: Any) -> str:
    state = client.api.inspect_container(container.id)["State"]
    return str((state.get("Health") or {}).get("Status") or "")


def heard(conn: psycopg.Connection[Any], name: str, timeout_s: float) -> float:
    """Wall-clock time at which the strike of ``name`` was committed (its NOTIFY)."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        for notify in conn.notifies(timeout=left, stop_after=1):
            if notify.payload == name:
                return time.time()
    raise SystemExit(f"strike latency: no strike 1 for {name} within {timeout_s:.0f}s")


def event_time(client: Any, container: Any, since: int) -> float:
    events = client.api.events(since=since, until=int(time.time()) + 1, decode=True,
                               filters={"container": container.id})
    for event in events:
        if event.get("Action") == "health_status: unhealthy":
            return float(event["timeNano"]) / 1e9
    raise SystemExit(f"strike latency: no unhealthy event for {container.name}")


def measure(client: Any, image: str) -> list[float]:
    run_id = uuid.uuid4().hex[:8]
    labels = {"aegis.enable": "true", "aegis.bench": run_id}
    made: list[Any] = []
    latencies_ms: list[float] = []
    with daemon_home(AEGIS_DOCKER_SCOPE="labeled", AEGIS_REMEDIATION="observe") as (env, dsn):
        for index in range(BACKGROUND):
            made.append(client.containers.run(
                image, ["/bin/sh", "-c", SCRIPT], name=f"aegis-bench-{run_id}-bg{index}",
                detach=True, network_mode="none", healthcheck=DEFAULT_PROBE, labels=labels))
        daemon = start_daemon(env)
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(TRIGGER)
                conn.execute(f"LISTEN {CHANNEL}")
                first = f"aegis-bench-{run_id}-bg0" if BACKGROUND else None
                if first:
                    wait(lambda: conn.execute("SELECT 1 FROM containers WHERE name = %s",
                                              (first,)).fetchone() is not None,
                         60, "the daemon's first sweep")
                for index in range(SAMPLES):
                    container = client.containers.run(
                        image, ["/bin/sh", "-c", SCRIPT], name=f"aegis-bench-{run_id}-{index}",
                        detach=True, network_mode="none", healthcheck=FAST_PROBE,
                        labels=labels)
                    made.append(container)
                    wait(lambda c=container: health(client, c) == "healthy", 20, "healthy")
                    since = int(time.time()) - 1
                    container.exec_run(["rm", "-f", "/healthy"])
                    seen_s = heard(conn, container.name, 20)
                    latencies_ms.append((seen_s - event_time(client, container, since)) * 1000)
                    container.remove(force=True)
                    made.remove(container)
        finally:
            stop_daemon(daemon)
            for container in made:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
    return latencies_ms


def main() -> None:
    from tests.images import build_busybox

    client = docker.from_env()
    latencies = measure(client, build_busybox(client))
    p99 = percentile(latencies, 0.99)
    verdict = "ok" if p99 < GOAL_P99_MS else "MISSED"
    print(f"unhealthy event -> strike 1 recorded, {len(latencies)} samples beside "
          f"{BACKGROUND} supervised containers: p50 {statistics.median(latencies):.1f} ms, "
          f"p95 {percentile(latencies, 0.95):.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(latencies):.1f} ms (goal p99 < {GOAL_P99_MS:.0f} ms: {verdict}); "
          f"slowest {', '.join(f'{v:.0f}' for v in sorted(latencies)[-5:])} ms")
    report("strike_latency", [
        Figure("event-to-strike latency p50", statistics.median(latencies), "ms"),
        Figure("event-to-strike latency p99", p99, "ms", f"< {GOAL_P99_MS:.0f} ms",
               p99 < GOAL_P99_MS),
        Figure("event-to-strike latency max", max(latencies), "ms"),
        Figure("event-to-strike samples", float(len(latencies)), "")])


if __name__ == "__main__":
    main()
