"""SIGTERM at the worst moments: during a long job, during a container restart, during a
webhook delivery. Each time the daemon finishes what it started, records it, exits 0,
and the next daemon does not do it again."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from aegis import api
from aegis.storage.outbox import Channel, Notification
from tests.support.containers import IGNORES_TERM
from tests.support.daemons import Spawner, daemon_env, daemon_running
from tests.support.discord import FakeDiscord
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for


def test_sigterm_during_a_long_job_lets_it_finish_once(
        aegis_env: dict[str, str], spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = daemon_env(aegis_env, AEGIS_SHUTDOWN_GRACE="20s")
    daemon = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    rows(url, "INSERT INTO tasks (job_id, args) VALUES ('bump', '{\"n\": 1, \"seconds\": 3}') "
              "RETURNING id")
    wait_for(lambda: rows(url, "SELECT 1 FROM job_runs WHERE job_id = 'bump' AND "
                               "status = 'running'"), what="the long job running")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert rows(url, "SELECT status FROM job_runs WHERE job_id = 'bump'") == [{"status": "ok"}]
    assert rows(url, "SELECT status FROM tasks") == [{"status": "done"}]
    assert rows(url, "SELECT count(*) AS n FROM job_runs WHERE status = 'running'") == [
        {"n": 0}]

    again = spawn(env)
    wait_for(daemon_running(url), what="the next daemon")
    time.sleep(2)
    again.send_signal(signal.SIGTERM)
    assert again.wait(30) == 0
    assert rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = "
                     "'bump_ran'") == [{"n": 1}]
    assert rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = "
                     "'daemon_unclean_restart'") == [{"n": 0}]


def test_sigterm_during_a_delivery_records_it_and_never_posts_it_again(
        aegis_env: dict[str, str], app: api.Aegis, fake: FakeDiscord, spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    env = daemon_env(aegis_env, AEGIS_JOB_MODULES="",
                     DISCORD_JOURNAL_WEBHOOK_URL=fake.webhook_url())
    daemon = spawn(env)
    wait_for(daemon_running(url), what="daemon")
    fake.script("slow:3")
    app.store.record_event("test_message", "slow delivery",
                           notify=Notification(Channel.JOURNAL, "slow delivery"))
    wait_for(lambda: rows(url, "SELECT 1 FROM outbox WHERE claimed_by IS NOT NULL"),
             what="the delivery under way")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
    assert [p["embeds"][0]["title"] for p in fake.received] == ["slow delivery"]
    assert rows(url, "SELECT status FROM outbox") == [{"status": "delivered"}]

    again = spawn(env)
    wait_for(daemon_running(url), what="the next daemon")
    time.sleep(3)
    again.send_signal(signal.SIGTERM)
    assert again.wait(30) == 0
    assert len(fake.received) == 1


@pytest.mark.docker
@pytest.mark.usefixtures("engine_to_ourselves")
def test_sigterm_during_a_container_restart_restarts_it_once(
        aegis_env: dict[str, str], docker_client: Any, make_container: Callable[..., Any],
        spawn: Spawner) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    name = f"aegis-sigterm-{uuid.uuid4().hex[:8]}"
    # never healthy, and ignores SIGTERM: a restart takes the whole stop timeout
    container = make_container(
        IGNORES_TERM, name=name, labels={"aegis.enable": "true", "aegis.stop-timeout": "4s"},
        healthcheck={"test": ["CMD", "false"], "interval": 1_000_000_000,
                     "timeout": 1_000_000_000, "retries": 1})
    try:
        env = daemon_env(aegis_env, AEGIS_JOB_MODULES="", AEGIS_REMEDIATION="on",
                         AEGIS_DOCKER_SCOPE="labeled", AEGIS_STRIKE_INTERVAL="2s",
                         AEGIS_RESTART_BACKOFF="0s", AEGIS_SHUTDOWN_GRACE="10s")
        daemon = spawn(env)
        wait_for(daemon_running(url), what="daemon")
        wait_for(lambda: rows(url, "SELECT 1 FROM containers WHERE name = %s AND "
                                   "phase = 'restarting'", name),
                 timeout_s=40, what="the restart under way")
        started_before = docker_client.api.inspect_container(container.id)["State"][
            "StartedAt"]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0

        again = spawn(env)
        wait_for(daemon_running(url), what="the next daemon")
        time.sleep(1.5)  # less than a strike interval: the same incident, no new restart
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
        events = Counter(r["event_type"] for r in rows(
            url, "SELECT event_type FROM episodic_memory WHERE source = 'supervisor'"))
        assert events["container_restarted"] == 1, events
        assert events["container_unhealthy"] == 1, events
        started_after = docker_client.api.inspect_container(container.id)["State"][
            "StartedAt"]
        assert started_after != started_before, "the restart under way was not completed"
    finally:
        container.remove(force=True)
