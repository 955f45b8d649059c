"""A container's life around the three strikes, on a real engine and real PostgreSQL:
re-created by compose or renamed (its row, strike history and restart budget follow it),
and crashed under each restart policy (escalated once Docker has given up, never while
Docker is still restarting it). Events come from the engine's own stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from docker.types import Mount

from aegis import api
from aegis.core.clock import utcnow
from aegis.supervision.containers import listing
from aegis.supervision.supervisor import Supervisor
from aegis.supervision.watcher import ContainerEvents, Watcher
from tests.support.containers import BREAKS_FOR_GOOD, make_unhealthy, started_at, wait_status
from tests.support.rows import count, events_of, row_of, sql_rows
from tests.support.supervision import INTERVAL, supervisor
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]
COMPOSE = {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}


def replay(client: Any, sv: Supervisor, since: int, now: Any, test_id: str,
           **filters: str) -> list[str]:
    """Hand the engine's events about this test's containers since ``since`` to ``sv``,
    in order, at ``now``; returns their actions."""
    events = list(client.api.events(since=since, until=int(time.time()) + 1, decode=True,
                                    filters={"type": "container",
                                             "label": f"aegis.test={test_id}", **filters}))
    for event in events:
        ContainerEvents(sv).handle(event, now)
    return [str(event.get("Action")) for event in events]


def names_of(url: str) -> list[str]:
    return [r["name"] for r in sql_rows(url, "SELECT name FROM containers ORDER BY name")]


def test_a_recreated_then_renamed_compose_container_keeps_its_row(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    prefix = f"aegis-test-{uuid.uuid4().hex[:8]}"
    first = make_container(BREAKS_FOR_GOOD, labels=COMPOSE, name=f"{prefix}-web-1")
    test_id = first.labels["aegis.test"]
    make_unhealthy(docker_client, first)
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)
    sv.reconcile(t0 + INTERVAL)  # strike 2: restarted
    before = row_of(database_url, first.name)
    assert (before["phase"], before["strikes"], before["incident"], before["restarts"]) == \
        ("restarting", 2, 1, [t0 + INTERVAL])

    # compose re-creates the service: the old container goes, a new one (new id, and here
    # a new number) comes, and aegis follows the engine's events
    since = int(time.time()) - 1
    first.remove(force=True)
    second = make_container(BREAKS_FOR_GOOD, labels=COMPOSE, name=f"{prefix}-web-2")
    wait_status(docker_client, second, "running")
    now = t0 + INTERVAL + timedelta(seconds=20)
    actions = replay(docker_client, sv, since, now, test_id)
    assert "destroy" in actions
    assert "start" in actions
    assert names_of(database_url) == [second.name]
    row = row_of(database_url, second.name)
    assert (row["container_id"], row["phase"], row["strikes"], row["incident"],
            row["restarts"], row["removed_at"]) == \
        (second.id, "restarting", 2, 1, [t0 + INTERVAL], None)
    # the kill that removed its predecessor is not a stop asked of the new container
    assert row["stopped_by_user"] is False
    [shown] = listing(app, now)
    assert (shown.name, shown.restarts_last_hour) == (second.name, 1)

    # docker rename: the row moves to the new name with the rename event
    since = int(time.time()) - 1
    second.rename(f"{prefix}-web")
    assert replay(docker_client, sv, since, now, test_id, event="rename") == ["rename"]
    assert names_of(database_url) == [f"{prefix}-web"]
    # and with the next sighting of it when the event was missed (the daemon was down)
    second.rename(f"{prefix}-shop-web")
    sv.reconcile(now)
    assert names_of(database_url) == [f"{prefix}-shop-web"]
    renamed = row_of(database_url, f"{prefix}-shop-web")
    assert (renamed["container_id"], renamed["strikes"], renamed["restarts"]) == \
        (second.id, 2, [t0 + INTERVAL])

    # and the strike history goes on under the new name: still unhealthy after the
    # restart, the re-created container is escalated with the restart counted
    make_unhealthy(docker_client, second)
    sv.reconcile(t0 + 2 * INTERVAL)
    escalated = events_of(database_url, f"{prefix}-shop-web")
    assert [e["event_type"] for e in escalated] == ["container_escalated"]
    assert (escalated[0]["details"]["incident"], escalated[0]["details"]["restarts_last_hour"]) \
        == (1, 1)


def test_given_up_by_docker_after_its_on_failure_retries_escalated_once(
        watcher: Watcher, app: api.Aegis, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    # exits at once: Docker restarts it once (on-failure:1), then gives up
    container = make_container("exit 1", restart_policy={"Name": "on-failure",
                                                         "MaximumRetryCount": 1})
    wait_for(lambda: count(database_url, "container_escalated", container.name) == 1, 30)
    state = docker_client.api.inspect_container(container.id)
    assert (state["State"]["Status"], state["State"]["ExitCode"], state["RestartCount"]) == \
        ("exited", 1, 1)
    finished = state["State"]["FinishedAt"]
    # later sweeps and checks leave it alone: escalated once, never restarted by aegis
    sv = supervisor(app, docker_client)
    for step in range(1, 4):
        sv.reconcile(utcnow() + step * INTERVAL)
        assert sv.check(container.id, utcnow() + step * INTERVAL) == "none"
    state = docker_client.api.inspect_container(container.id)
    assert (state["State"]["FinishedAt"], state["RestartCount"]) == (finished, 1)
    found = events_of(database_url, container.name)
    assert [e["event_type"] for e in found] == ["container_escalated"]
    details = found[0]["details"]
    assert {k: details[k] for k in ("exit_code", "status", "restart_policy",
                                    "docker_restart_count")} == {
        "exit_code": 1, "status": "exited", "restart_policy": "on-failure:1",
        "docker_restart_count": 1}
    assert details["reason"] == ("container exited (exit code 1) and Docker is not restarting "
                                 "it (restart policy on-failure:1, 1 restart by Docker)")
    assert len(sql_rows(database_url, "SELECT id FROM outbox")) == 1


@pytest.mark.parametrize("policy", [{"Name": "always"}, {"Name": "unless-stopped"},
                                    {"Name": "on-failure", "MaximumRetryCount": 20}])
def test_a_crash_loop_docker_is_restarting_is_escalated_once_and_left_to_docker(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str, policy: dict[str, Any]) -> None:
    container = make_container("sleep 1; exit 1", restart_policy=policy)
    sv = supervisor(app, docker_client)
    sv.check(container.id, utcnow())
    seen: set[str] = set()
    actions: list[str] = []
    deadline = time.monotonic() + 30
    # Docker's delay doubles from 0.1 s: from its third restart on it waits 0.4 s or more
    # between runs of a second, shown as `restarting`; aegis checks it then, as the
    # watcher does after a die
    while time.monotonic() < deadline and not ("restarting" in seen and "running" in seen
                                               and "escalate" in actions):
        attrs = docker_client.api.inspect_container(container.id)
        if attrs["RestartCount"] >= 3 and attrs["State"]["Status"] in ("restarting",
                                                                        "running"):
            actions.append(sv.check(container.id, utcnow()))
            seen.add(attrs["State"]["Status"])
        time.sleep(0.05)
    assert "restarting" in seen
    sv.reconcile(utcnow())
    # escalated once, on Docker's third restart; never again, never restarted by aegis
    assert [a for a in actions if a != "none"] == ["escalate"]
    found = events_of(database_url, container.name)
    assert [e["event_type"] for e in found] == ["container_escalated"]
    details = found[0]["details"]
    assert details["class"] == "crash_loop"
    assert details["reason"].startswith("crash loop: Docker restarted it ")
    row = row_of(database_url, container.name)
    assert (row["state"], row["restarts"]) == ("escalated", [])


def test_a_failed_restart_by_docker_is_escalated_under_restart_policy_always(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str, tmp_path: Path) -> None:
    # Docker's own restart fails when the bind-mounted folder is gone; it never tries again
    folder = tmp_path / "data"
    folder.mkdir()
    container = make_container("sleep 1; exit 1", restart_policy={"Name": "always"},
                               mounts=[Mount("/data", str(folder), type="bind")])
    sv = supervisor(app, docker_client)
    sv.reconcile(utcnow())
    folder.rmdir()
    wait_status(docker_client, container, "exited", timeout_s=30)
    assert docker_client.api.inspect_container(container.id)["RestartCount"] == 1
    first_start = started_at(docker_client, container)
    t0 = utcnow()
    for step in range(3):
        sv.reconcile(t0 + step * INTERVAL)  # a listing: aegis inspects it before deciding
    assert started_at(docker_client, container) == first_start
    found = events_of(database_url, container.name)
    assert [e["event_type"] for e in found] == ["container_escalated"]
    details = found[0]["details"]
    assert (details["restart_policy"], details["docker_restart_count"]) == ("always", 1)
    assert "no such file or directory" in details["docker_error"]

