"""A container's life around the three strikes, on a real engine and real PostgreSQL:
re-created by compose or renamed (its row, strike history and restart budget follow it).
Events come from the engine's own stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aegis import api
from aegis.clock import utcnow
from aegis.containers import listing
from aegis.supervisor import Supervisor
from tests.conftest import sql_rows
from tests.integration.test_supervisor_protocol import (
    BREAKS_FOR_GOOD,
    INTERVAL,
    events_of,
    make_container,  # noqa: F401  (fixture)
    make_unhealthy,
    row_of,
    supervisor,
    wait_status,
)

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
        sv.handle_event(event, now)
    return [str(event.get("Action")) for event in events]


def names_of(url: str) -> list[str]:
    return [r["name"] for r in sql_rows(url, "SELECT name FROM containers ORDER BY name")]


def test_a_recreated_then_renamed_compose_container_keeps_its_row(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],  # noqa: F811
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

