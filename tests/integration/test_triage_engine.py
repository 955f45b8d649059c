"""Triage before restarting, on the real engine, with a real ``aegis run`` supervising:
for each class the exact events aegis records and the restarts the engine saw aegis ask
for (the engine emits ``restart`` for an API restart, never for its restart policy's).

- a broken probe (it cannot run): escalated at strike 2, 0 restarts
- a hung application (its probe times out every time): restarted once, then escalated
  with the timeout said; a probe that timed out once and then failed: restarted
- killed for lack of memory: restarted once, then escalated the next time, at most 1 restart
- a crash loop under Docker's restart policy: escalated once, 0 restarts by aegis
- plain unhealthy: today's protocol (strike 1, a restart, an escalation)
- all of them at once, restarts running side by side: each as on its own
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.containers import FAST_PROBE, IDLE, OK_FILE
from tests.support.daemons import Spawner, run_daemon
from tests.support.engines import EngineEvents
from tests.support.rows import events_of, sql_rows, types_of
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

MEMORY_LIMIT = 32 * 1024 * 1024
# Healthy for 8 s after each start, then a process inside is killed for memory (the
# container runs on): unhealthy until its next start. The process asks to be the OOM
# killer's first choice, so the kernel never takes the container's main process instead.
OOM_AFTER_8S = ("trap 'exit 0' TERM; touch /ok; sleep 8 & wait; "
                "sh -c 'echo 1000 > /proc/self/oom_score_adj; "
                "x=$(head -c 100000000 /dev/zero | tr \"\\\\0\" a)'; rm -f /ok; " + IDLE)


@pytest.fixture
def engine_seen(docker_client: Any) -> Iterator[EngineEvents]:
    events = EngineEvents()
    events.follow(docker_client)
    yield events
    events.stop()


@pytest.fixture
def container(make_container: Callable[..., Any]) -> Callable[..., Any]:
    """Start test containers labelled aegis.enable=true (the daemon's scope is labeled,
    so it never touches anything else)."""
    def make(script: str, healthcheck: dict[str, Any], labels: dict[str, str] | None = None,
             **kwargs: Any) -> Any:
        return make_container(script, healthcheck=healthcheck,
                              labels={"aegis.enable": "true", **(labels or {})}, **kwargs)

    return make


@pytest.mark.parametrize("probe", [
    ["CMD-SHELL", "nosuchcheck --ping"],  # the shell: not found, exit 127
    ["CMD", "/usr/bin/curl", "-f", "http://localhost/"],  # not in the image: exec fails
], ids=["not-found", "exec-failed"])
def test_a_broken_probe_is_escalated_at_strike_2_and_never_restarted(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents, probe: list[str]) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    sick = container(IDLE, {**FAST_PROBE, "test": probe, "timeout": 300_000_000})
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_escalated" in types_of(url, sick.name), timeout_s=60,
             what="the escalation")
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM outbox"), what="its alert")
    assert types_of(url, sick.name) == ["container_unhealthy", "container_escalated"]
    escalated = events_of(url, sick.name)[1]["details"]
    assert escalated["class"] == "broken_probe"
    assert escalated["reason"].startswith("the health check command is broken, a restart "
                                          "cannot help: the probe ")
    assert escalated["restarts_last_hour"] == 0
    alert = sql_rows(url, "SELECT title, body, fields FROM outbox")[0]
    assert "Class: the health check command is broken" in alert["body"]
    assert alert["fields"]["class"] == "broken_probe"
    engine_seen.stop()
    assert engine_seen.times(sick.name, "restart") == []


def test_a_hung_application_is_restarted_once_then_escalated_with_the_timeout_said(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents) -> None:
    # the probe hangs from the start, as `curl localhost/health` does against a deadlock
    url = aegis_env["AEGIS_DATABASE_URL"]
    hung = container(IDLE, {**FAST_PROBE, "test": ["CMD-SHELL", "sleep 10"],
                            "timeout": 1_000_000_000})
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_escalated" in types_of(url, hung.name), timeout_s=60,
             what="the escalation")
    assert types_of(url, hung.name) == ["container_unhealthy", "container_restarted",
                                        "container_escalated"]
    found = events_of(url, hung.name)
    restarted, escalated = found[1]["details"], found[2]["details"]
    assert restarted["class"] == "hung"
    assert escalated["class"] == "hung"
    assert escalated["reason"] == ("the health check timed out every time since the restart "
                                   "(timeout 1s): the application hangs, or the probe needs "
                                   "longer than its timeout")
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM outbox"), what="its alert")
    alert = sql_rows(url, "SELECT body, fields FROM outbox")[0]
    assert "Class: the health check times out: the application hangs" in alert["body"]
    assert "the probe needs longer than its timeout" in alert["body"]
    assert alert["fields"]["class"] == "hung"
    assert sql_rows(url, "SELECT incident_class FROM containers WHERE name = %s",
                    hung.name) == [{"incident_class": "hung"}]
    engine_seen.stop()
    assert len(engine_seen.times(hung.name, "restart")) == 1


def test_a_probe_that_timed_out_once_and_then_failed_is_restarted(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    # the first probe hangs past its timeout, every later one fails at once
    first_hangs = "if [ -f /probed ]; then exit 1; fi; touch /probed; sleep 10"
    sick = container(IDLE, {**FAST_PROBE, "test": ["CMD-SHELL", first_hangs],
                            "timeout": 1_000_000_000})
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_escalated" in types_of(url, sick.name), timeout_s=60,
             what="the escalation")
    assert types_of(url, sick.name) == ["container_unhealthy", "container_restarted",
                                        "container_escalated"]
    escalated = events_of(url, sick.name)[2]["details"]
    assert escalated["class"] == "unhealthy"
    assert escalated["reason"] == "still unhealthy one strike interval after the restart"
    engine_seen.stop()
    assert len(engine_seen.times(sick.name, "restart")) == 1


def test_an_oom_kill_is_restarted_once_and_escalated_when_it_comes_back(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    hungry = container(OOM_AFTER_8S, OK_FILE, mem_limit=MEMORY_LIMIT,
                       memswap_limit=MEMORY_LIMIT)
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_escalated" in types_of(url, hungry.name), timeout_s=90,
             what="the second incident escalated")
    assert types_of(url, hungry.name) == [
        "container_unhealthy", "container_restarted", "container_recovered",
        "container_unhealthy", "container_escalated"]
    found = events_of(url, hungry.name)
    restarted, escalated = found[1]["details"], found[4]["details"]
    assert (restarted["class"], restarted["reason"]) == (
        "oom", "killed for lack of memory: restarted once")
    assert escalated["class"] == "oom"
    assert escalated["reason"] == ("killed for lack of memory again within an hour of "
                                   "aegis's restart: no restart in a loop")
    assert escalated["memory_limit_bytes"] == MEMORY_LIMIT
    assert escalated["memory_max_usage_bytes"] >= 0.95 * MEMORY_LIMIT
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM outbox"), what="its alert")
    body = sql_rows(url, "SELECT body FROM outbox")[0]["body"]
    assert "Class: killed for lack of memory" in body
    assert "Memory: limit 32 MiB, peak 32 MiB" in body
    engine_seen.stop()
    assert len(engine_seen.times(hungry.name, "restart")) == 1


def test_a_crash_loop_under_dockers_restart_policy_is_escalated_once_never_restarted(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents, docker_client: Any) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    looping = container("sleep 1; exit 3", {**FAST_PROBE, "test": ["CMD", "true"]},
                        restart_policy={"Name": "always"})
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_escalated" in types_of(url, looping.name), timeout_s=60,
             what="the crash loop escalated")
    # Docker goes on restarting it; aegis says nothing more and never adds a restart
    count = docker_client.api.inspect_container(looping.id)["RestartCount"]
    wait_for(lambda: docker_client.api.inspect_container(looping.id)["RestartCount"]
             >= count + 2, timeout_s=60, what="Docker's next restarts")
    assert types_of(url, looping.name) == ["container_escalated"]
    escalated = events_of(url, looping.name)[0]["details"]
    assert escalated["class"] == "crash_loop"
    assert escalated["restart_policy"] == "always"
    assert set(escalated["exit_codes"]) == {3}
    assert escalated["reason"].startswith("crash loop: Docker restarted it ")
    assert sql_rows(url, "SELECT state FROM containers WHERE name = %s",
                    looping.name) == [{"state": "escalated"}]
    engine_seen.stop()
    assert engine_seen.times(looping.name, "restart") == []


def test_plain_unhealthy_follows_the_three_strikes(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents) -> None:
    url = aegis_env["AEGIS_DATABASE_URL"]
    sick = container(IDLE, {**OK_FILE, "test": ["CMD-SHELL", "echo 'no /ok here'; exit 1"]})
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_escalated" in types_of(url, sick.name), timeout_s=60,
             what="the escalation")
    assert types_of(url, sick.name) == ["container_unhealthy", "container_restarted",
                                        "container_escalated"]
    assert [e["details"]["class"] for e in events_of(url, sick.name)] == [
        "unhealthy", "unhealthy", "unhealthy"]
    engine_seen.stop()
    assert len(engine_seen.times(sick.name, "restart")) == 1


def test_a_swarm_task_is_observed_and_never_restarted(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents) -> None:
    # a task as Swarm labels it (a Swarm is not run here: the label is what aegis reads)
    url = aegis_env["AEGIS_DATABASE_URL"]
    task = container(IDLE, {**OK_FILE, "test": ["CMD-SHELL", "exit 1"]},
                     labels={"com.docker.swarm.service.id": "x7k2",
                             "com.docker.swarm.service.name": "shop_web"})
    run_daemon(spawn, aegis_env)
    wait_for(lambda: "container_unhealthy" in types_of(url, task.name), timeout_s=30,
             what="strike 1")
    wait_for(lambda: sql_rows(url, "SELECT 1 FROM containers WHERE name = %s AND "
                                   "strike_at < now() - interval '6 seconds'", task.name),
             timeout_s=30, what="three strike intervals")
    assert types_of(url, task.name) == ["container_orchestrated", "container_unhealthy"]
    noted = events_of(url, task.name)[0]["summary"]
    assert noted == (f"{task.name} is a task of the Swarm service shop_web: aegis "
                     "observes it and never restarts it (Swarm replaces unhealthy tasks)")
    assert sql_rows(url, "SELECT supervision, state FROM containers WHERE name = %s",
                    task.name) == [{"supervision": "orchestrated", "state": "striking"}]
    engine_seen.stop()
    assert engine_seen.times(task.name, "restart") == []
    assert sql_rows(url, "SELECT 1 FROM outbox") == []


def test_triage_holds_when_restarts_run_side_by_side(
        aegis_env: dict[str, str], spawn: Spawner, container: Callable[..., Any],
        engine_seen: EngineEvents) -> None:
    """Every class failing at once, restarts side by side (AEGIS_MAX_PARALLEL_RESTARTS=2,
    from the watcher and the sweep alike): the plain ones restarted once each, the
    classes triage keeps from restarting never handed a restart."""
    url = aegis_env["AEGIS_DATABASE_URL"]
    plain = [container(IDLE, {**OK_FILE, "test": ["CMD-SHELL", "exit 1"]}) for _ in range(3)]
    broken = container(IDLE, {**FAST_PROBE, "test": ["CMD-SHELL", "nosuchcheck"]})
    looping = container("sleep 1; exit 3", {**FAST_PROBE, "test": ["CMD", "true"]},
                        restart_policy={"Name": "always"})
    task = container(IDLE, {**OK_FILE, "test": ["CMD-SHELL", "exit 1"]},
                     labels={"com.docker.swarm.service.id": "x7k2"})
    run_daemon(spawn, aegis_env, AEGIS_MAX_PARALLEL_RESTARTS="2")
    names = [c.name for c in (*plain, broken, looping)]
    wait_for(lambda: all("container_escalated" in types_of(url, n) for n in names),
             timeout_s=90, what="every one but the Swarm task escalated")
    engine_seen.stop()
    for sick in plain:
        assert types_of(url, sick.name) == ["container_unhealthy", "container_restarted",
                                            "container_escalated"]
        assert len(engine_seen.times(sick.name, "restart")) == 1
    assert types_of(url, broken.name) == ["container_unhealthy", "container_escalated"]
    # a fresh unhealthy event is strike 1 from what it carries, before any inspect (a
    # looping container's probe can fail as it exits): only what follows is triage's
    assert types_of(url, looping.name)[-1:] == ["container_escalated"]
    assert "container_restarted" not in types_of(url, looping.name)
    assert types_of(url, task.name)[0] == "container_orchestrated"
    assert "container_restarted" not in types_of(url, task.name)
    for spared in (broken, looping, task):
        assert engine_seen.times(spared.name, "restart") == [], spared.name
