"""The Docker engine restarted in the middle of an incident: the daemon keeps its strike
state, records the engine's absence once, reconnects its event stream within 10 s of the
engine answering again, and carries the incident to its end. Every restart it records is
one the engine made once; the starts Docker makes by itself are not counted as its own."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.containers import NEVER_HEALTHY
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.engines import EngineEvents, PrivateEngine
from tests.support.rows import event_counts
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

HEALTHCHECK = {"test": ["CMD", "/bin/sh", "-c", "echo probe says no; exit 1"],
               "interval": 1_000_000_000, "timeout": 2_000_000_000, "retries": 1}
# The bound: the stream is back this soon after the engine answers again.
RECONNECT_BOUND_S = 10.0
# An engine's restart event comes this long at most after aegis decided the restart.
RESTART_MADE_WITHIN_S = 30.0


def test_an_engine_restart_mid_incident_neither_resets_nor_repeats_a_strike(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    client: Any = engine.client()
    seen = EngineEvents()
    seen.follow(client)
    container = engine.run(NEVER_HEALTHY, name="flappy", healthcheck=HEALTHCHECK,
                           restart_policy={"Name": "always"})
    env = daemon_env(aegis_env, AEGIS_JOB_MODULES="", DOCKER_HOST=engine.url,
                     AEGIS_REMEDIATION="on", AEGIS_STRIKE_INTERVAL="4s",
                     AEGIS_RESTART_BACKOFF="0s", AEGIS_MAX_RESTARTS="3",
                     AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY="5s", AEGIS_LOG_LEVEL="info")
    daemon = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    wait_for(lambda: event_counts(url)["container_unhealthy"], what="strike 1")

    engine.stop()  # mid-incident: between strike 1 and the restart
    stopped_at = time.time()
    wait_for(lambda: event_counts(url)["docker_unavailable"], what="the outage noticed")
    assert run_cli("check", env=env).returncode == 0
    time.sleep(2)
    engine.start()
    assert engine.answered_at is not None
    client.close()
    client = engine.client()
    seen.follow(client, since=stopped_at)  # the new engine's events from its very start

    wait_for(lambda: event_counts(url)["container_escalated"], timeout_s=60,
             what="the incident carried to strike 3")
    wait_for(lambda: event_counts(url)["docker_available"], what="the engine back")
    time.sleep(3)  # a few more sweeps and events: nothing may repeat
    assert daemon.poll() is None
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    seen.stop()

    connected = [datetime.fromisoformat(entry["timestamp"]).timestamp()
                 for entry in spawn.logged(daemon, "docker_stream_connected")]
    reconnected = [moment for moment in connected if moment > stopped_at]
    assert reconnected, f"the event stream never came back: {connected}"
    assert reconnected[0] - engine.answered_at <= RECONNECT_BOUND_S, \
        f"the stream came back {reconnected[0] - engine.answered_at:.1f}s after the engine"

    counts = event_counts(url)
    assert counts["container_unhealthy"] == 1, "strike 1 was recorded again: state was lost"
    assert counts["container_escalated"] == 1
    assert counts["docker_unavailable"] == 1
    assert counts["docker_available"] == 1
    # aegis's restarts are the engine's restart events; every one it recorded was made
    # once, none missed or doubled
    made = seen.times("flappy", "restart")
    recorded = [r["timestamp"].timestamp() for r in rows(
        url, "SELECT timestamp FROM episodic_memory WHERE event_type = 'container_restarted' "
             "ORDER BY timestamp")]
    assert counts["container_restarted"] >= 1, counts
    assert len(made) == len(recorded), (made, recorded)
    for decided, restarted in zip(recorded, made, strict=True):
        assert decided <= restarted <= decided + RESTART_MADE_WITHIN_S, (recorded, made)
    # Docker started it once more by itself, under its restart policy, when the engine
    # came back: a start of its own, which aegis neither made nor recorded
    own_starts = len(seen.times("flappy", "start")) - len(made) - 1  # less the first run
    assert own_starts == 1, seen.events
    state = rows(url, "SELECT phase, strikes FROM containers WHERE name = 'flappy'")
    assert state == [{"phase": "escalated", "strikes": 3}]
    assert rows(url, "SELECT count(*) AS n FROM outbox WHERE dedup_key LIKE "
                     "'escalation:%%flappy%%'") == [{"n": 1}]
    client.api.inspect_container(container.id)  # still there, left for the operator
    client.close()
