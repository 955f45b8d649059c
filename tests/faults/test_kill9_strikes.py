"""kill -9 of a supervising daemon at the two moments where forgetting would cost a restart:
between strike 2 (the restart) and strike 3, and inside the back-off before a second
restart. The next daemon carries the strikes, the restart budget and the back-off on from
the ``containers`` table; the engine's own event stream shows what was really done."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.containers import EXIT_ON_TERM, NEVER_HEALTHY, OK_FILE
from tests.support.daemons import Spawner, daemon_running, kill_9, supervising_env
from tests.support.engines import EngineEvents, PrivateEngine
from tests.support.rows import event_counts, row_of
from tests.support.rows import sql_rows as rows
from tests.support.waiting import wait_for

pytestmark = pytest.mark.docker

# Unhealthy from the start; after each restart healthy for 8 s (more than the stable
# period: a recovery), then unhealthy again. The container's files outlive a restart.
RELAPSING = (f"{EXIT_ON_TERM}if [ -f /ran ]; then touch /ok; sleep 8 & wait; rm -f /ok; "
             "fi; touch /ran; while :; do sleep 1 & wait; done")
STRIKE_INTERVAL_S = 5
BACKOFF_S = 25
# The engine signals the container a moment after aegis decided the restart (the decision
# is saved first): the slack allowed when comparing the engine's times with the back-off.
ENGINE_SLACK_S = 1.0


def supervisor_events(url: str, event_type: str, name: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT timestamp, summary, details FROM episodic_memory WHERE "
                     "event_type = %s AND details->>'container' = %s ORDER BY timestamp",
                event_type, name)


def escalation_alerts(url: str, name: str) -> list[str]:
    return [r["dedup_key"] for r in rows(
        url, "SELECT dedup_key FROM outbox WHERE dedup_key LIKE %s ORDER BY id",
        f"escalation:test-host:{name}:%")]


@pytest.fixture
def seen(engine: PrivateEngine) -> Iterator[EngineEvents]:
    """The engine's container events from before the test's container starts."""
    client = engine.client()
    events = EngineEvents()
    events.follow(client)
    yield events
    events.stop()
    client.close()


def test_a_daemon_killed_between_restart_and_strike_3_is_succeeded_without_a_second_restart(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner,
        seen: EngineEvents) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    engine.run(NEVER_HEALTHY, name="sick", healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    # one restart an hour: after the kill, only the carried-over history can refuse another
    env = supervising_env(aegis_env, DOCKER_HOST=engine.url,
                          AEGIS_STRIKE_INTERVAL=f"{STRIKE_INTERVAL_S}s",
                          AEGIS_MAX_RESTARTS="1")
    first = spawn(env)
    wait_for(daemon_running(url), what="the first daemon")

    wait_for(lambda: seen.times("sick", "restart"), timeout_s=60,
             what="strike 2: the restart, in the engine's event stream")
    wait_for(lambda: supervisor_events(url, "container_restarted", "sick"),
             what="the restart recorded")
    kill_9(first)
    before = row_of(url, "sick")
    assert event_counts(url)["container_escalated"] == 0, \
        "strike 3 came before the kill: the test needs a longer strike interval"
    assert (before["phase"], before["strikes"], before["incident"]) == ("restarting", 2, 1)
    assert len(before["restarts"]) == 1

    second = spawn(env)
    wait_for(lambda: supervisor_events(url, "container_escalated", "sick"), timeout_s=60,
             what="strike 3 from the second daemon")
    after = row_of(url, "sick")
    assert (after["phase"], after["strikes"], after["incident"]) == ("escalated", 3, 1)
    assert after["restarts"] == before["restarts"], "the restart history was lost"
    escalation = supervisor_events(url, "container_escalated", "sick")[0]
    assert "still unhealthy one strike interval after the restart" in escalation["summary"]
    assert escalation["timestamp"] >= before["strike_at"] + timedelta(seconds=STRIKE_INTERVAL_S)
    assert escalation_alerts(url, "sick") == ["escalation:test-host:sick:1"]

    # the budget (one restart an hour) came through the kill: a new incident escalates
    # at strike 2 instead of restarting
    assert run_cli("ack", "sick", env=env).returncode == 0
    wait_for(lambda: len(supervisor_events(url, "container_escalated", "sick")) == 2,
             timeout_s=60, what="the next incident escalated")
    assert "restart budget spent" in \
        supervisor_events(url, "container_escalated", "sick")[1]["summary"]
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    seen.stop()

    assert len(seen.times("sick", "restart")) == 1, "the container was restarted again"
    counts = event_counts(url)
    assert counts["container_restarted"] == 1
    assert counts["container_restart_failed"] == 0
    assert [e["details"]["incident"] for e in supervisor_events(
        url, "container_unhealthy", "sick")] == [1, 2], "a strike 1 recorded twice"
    assert escalation_alerts(url, "sick") == ["escalation:test-host:sick:1",
                                              "escalation:test-host:sick:2"]
    assert row_of(url, "sick")["restarts"] == before["restarts"]


def test_a_daemon_killed_inside_the_back_off_leaves_the_next_one_to_wait_it_out(
        engine: PrivateEngine, aegis_env: dict[str, str], spawn: Spawner,
        seen: EngineEvents) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    engine.run(RELAPSING, name="relapsing", healthcheck=OK_FILE, labels={"aegis.enable": "true"})
    # a strike interval much shorter than the back-off: the second restart is due (strike
    # 2 of the second incident) long before the back-off allows it
    env = supervising_env(aegis_env, DOCKER_HOST=engine.url, AEGIS_STRIKE_INTERVAL="2s",
                          AEGIS_STABLE_PERIOD="3s", AEGIS_RESTART_BACKOFF=f"{BACKOFF_S}s",
                          AEGIS_MAX_RESTARTS="2")
    first = spawn(env)
    wait_for(daemon_running(url), what="the first daemon")
    wait_for(lambda: seen.times("relapsing", "restart"), timeout_s=60,
             what="the first restart, in the engine's event stream")
    wait_for(lambda: supervisor_events(url, "container_recovered", "relapsing"),
             timeout_s=60, what="the recovery after the first restart")
    # the second incident's strike 2 is due and held back by the back-off alone
    held = wait_for(lambda: rows(
        url, "SELECT restarts, next_check_at FROM containers WHERE name = 'relapsing' AND "
             "incident = 2 AND phase = 'striking' AND next_check_at > strike_at + "
             "interval '2 seconds'"), timeout_s=60, what="the second restart held back")[0]
    assert len(held["restarts"]) == 1
    assert held["next_check_at"] == held["restarts"][0] + timedelta(seconds=BACKOFF_S)
    kill_9(first)
    killed_at = time.time()
    assert len(seen.times("relapsing", "restart")) == 1
    assert killed_at < seen.times("relapsing", "restart")[0] + BACKOFF_S, \
        "the kill came too late to fall inside the back-off"

    second = spawn(env)
    wait_for(daemon_running(url), what="the second daemon")
    # it runs while the back-off still holds: one that forgot it would restart at once
    assert time.time() < seen.times("relapsing", "restart")[0] + BACKOFF_S - 2, \
        "the second daemon started too late to test the back-off"
    wait_for(lambda: len(seen.times("relapsing", "restart")) == 2, timeout_s=60,
             what="the second restart, from the second daemon")
    # after it: a recovery, a relapse, and the budget (two an hour) is spent
    wait_for(lambda: supervisor_events(url, "container_escalated", "relapsing"),
             timeout_s=60, what="the third incident escalated")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    seen.stop()

    restarts = seen.times("relapsing", "restart")
    assert len(restarts) == 2, f"restarts beyond the budget of 2: {restarts}"
    # each restart begins with the engine's kill (the stop signal), a moment after the
    # decision: the second began no earlier than the back-off after the first
    began = [max(t for t in seen.times("relapsing", "kill") if t <= restart)
             for restart in restarts]
    assert began[1] - began[0] >= BACKOFF_S - ENGINE_SLACK_S, (began, restarts)
    recorded = row_of(url, "relapsing")["restarts"]
    assert len(recorded) == 2
    assert recorded[1] - recorded[0] >= timedelta(seconds=BACKOFF_S)
    assert [e["details"]["incident"] for e in supervisor_events(
        url, "container_restarted", "relapsing")] == [1, 2]
    escalations = supervisor_events(url, "container_escalated", "relapsing")
    assert len(escalations) == 1
    assert "restart budget spent" in escalations[0]["summary"]
    assert escalations[0]["details"]["incident"] == 3
    assert escalation_alerts(url, "relapsing") == ["escalation:test-host:relapsing:3"]
