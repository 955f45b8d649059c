"""A daemon started with remediation on and no Docker engine at all (DOCKER_HOST names a
socket nobody listens on): it runs, its other jobs run, its health check passes, and the
engine's absence is recorded once however often the sweep and the watcher try. When an
engine appears at that socket, its arrival is recorded once and supervision begins."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.containers import FAILS, NEVER_HEALTHY
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.engines import PrivateEngine
from tests.support.rows import event_counts
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

SWEEPS_WITHOUT_ENGINE = 8


def finished_runs(url: str, job_id: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT status, result FROM job_runs WHERE job_id = %s AND status <> "
                     "'running' ORDER BY id", job_id)


def test_a_daemon_without_an_engine_runs_on_and_starts_supervising_when_one_appears(
        idle_engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    assert not idle_engine.socket.exists()
    env = daemon_env(aegis_env, AEGIS_JOB_MODULES="", DOCKER_HOST=idle_engine.url,
                     AEGIS_REMEDIATION="on", AEGIS_JOB__DOCKER_HEALTH_CHECK__EVERY="1s",
                     AEGIS_JOB__HEALTH_CHECK__EVERY="1s")
    daemon = spawn(env)
    wait_for(daemon_running(url), what="the daemon running without an engine")
    # eight sweeps take eight seconds or more: the watcher retries (0.5 s, then doubling
    # up to 5 s) several times meanwhile
    wait_for(lambda: len(finished_runs(url, "docker_health_check")) >= SWEEPS_WITHOUT_ENGINE,
             timeout_s=60, what=f"{SWEEPS_WITHOUT_ENGINE} sweeps without an engine")
    # Every sweep ends ok; on a loaded machine one may outlast its 1 s interval, and the next
    # slot is then recorded 'skipped' (an overlap), which is not a failure.
    sweeps = [run for run in finished_runs(url, "docker_health_check")
              if run["status"] != "skipped"]
    assert {run["status"] for run in sweeps} == {"ok"}, sweeps
    assert all(run["result"]["docker_available"] is False for run in sweeps), sweeps
    health = finished_runs(url, "health_check")
    assert health, "health_check never ran"
    assert {run["status"] for run in health} == {"ok"}, health
    assert run_cli("check", env=env).returncode == 0
    counts = event_counts(url)
    assert counts["docker_unavailable"] == 1, counts
    assert counts["docker_available"] == 0, counts
    assert daemon.poll() is None

    idle_engine.start()
    wait_for(lambda: event_counts(url)["docker_available"], timeout_s=30,
             what="the engine's arrival recorded")
    idle_engine.run(NEVER_HEALTHY, name="failing", healthcheck=FAILS)
    wait_for(lambda: rows(url, "SELECT 1 FROM episodic_memory WHERE event_type = "
                               "'container_unhealthy' AND details->>'container' = 'failing'"),
             timeout_s=30, what="strike 1 for the failing container")
    seen = len(finished_runs(url, "docker_health_check"))
    wait_for(lambda: len(finished_runs(url, "docker_health_check")) >= seen + 3,
             timeout_s=30, what="more sweeps with the engine")
    assert run_cli("check", env=env).returncode == 0
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0

    counts = event_counts(url)
    assert counts["docker_unavailable"] == 1, counts
    assert counts["docker_available"] == 1, counts
    assert counts["container_unhealthy"] == 1, counts
    assert rows(url, "SELECT phase, strikes FROM containers WHERE name = 'failing'") == [
        {"phase": "striking", "strikes": 1}]
    # the last sweep made (a slot claimed ahead when SIGTERM came is cancelled, unmade)
    made = [run for run in finished_runs(url, "docker_health_check") if run["status"] == "ok"]
    assert made[-1]["result"]["supervised"] == 1
