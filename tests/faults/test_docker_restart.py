"""The Docker engine restarted in the middle of an incident: the daemon keeps its strike
state, records the engine's absence once, and carries the incident to its end."""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.faults.engine import PrivateEngine
from tests.faults.procs import Spawner, daemon_env, daemon_running, rows, wait_for

pytestmark = pytest.mark.docker

NEVER_HEALTHY = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
HEALTHCHECK = {"test": ["CMD", "/bin/sh", "-c", "echo probe says no; exit 1"],
               "interval": 1_000_000_000, "timeout": 2_000_000_000, "retries": 1}


def event_counts(url: str) -> Counter[str]:
    return Counter(r["event_type"] for r in rows(url, "SELECT event_type FROM episodic_memory"))


def test_an_engine_restart_mid_incident_neither_resets_nor_repeats_a_strike(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    image = engine.build_busybox()
    client: Any = engine.client()
    container = client.containers.run(
        image, ["/bin/sh", "-c", NEVER_HEALTHY], name="flappy", detach=True,
        healthcheck=HEALTHCHECK, network_mode="none", stop_signal="SIGTERM",
        restart_policy={"Name": "always"})
    env = daemon_env(aegis_env, AEGIS_JOB_MODULES="", DOCKER_HOST=engine.url,
                     AEGIS_REMEDIATION="on", AEGIS_STRIKE_INTERVAL="4s",
                     AEGIS_RESTART_BACKOFF="0s", AEGIS_MAX_RESTARTS="3",
                     AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY="5s")
    daemon = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    wait_for(lambda: event_counts(url)["container_unhealthy"], what="strike 1")

    engine.stop()  # mid-incident: between strike 1 and the restart
    wait_for(lambda: event_counts(url)["docker_unavailable"], what="the outage noticed")
    assert run_cli("check", env=env).returncode == 0
    time.sleep(2)
    engine.start()
    client.close()
    client = engine.client()

    wait_for(lambda: event_counts(url)["container_escalated"], timeout_s=60,
             what="the incident carried to strike 3")
    wait_for(lambda: event_counts(url)["docker_available"], what="the engine back")
    time.sleep(3)  # a few more sweeps and events: nothing may repeat
    assert daemon.poll() is None
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    counts = event_counts(url)
    assert counts["container_unhealthy"] == 1, "strike 1 was recorded again: state was lost"
    assert counts["container_escalated"] == 1
    assert counts["docker_unavailable"] == 1
    assert counts["docker_available"] == 1
    assert 1 <= counts["container_restarted"] <= 3, counts
    state = rows(url, "SELECT phase, strikes FROM containers WHERE name = 'flappy'")
    assert state == [{"phase": "escalated", "strikes": 3}]
    assert rows(url, "SELECT count(*) AS n FROM outbox WHERE dedup_key LIKE "
                     "'escalation:%%flappy%%'") == [{"n": 1}]
    client.api.inspect_container(container.id)  # still there, left for the operator
    client.close()
