"""Sweeps on a real engine and real PostgreSQL: one that finds a container as the previous
sweep left it decides nothing for it, and none misses what changed, in the listing (a
container turned unhealthy), in its row (``aegis maintenance``) or in the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from aegis import api
from aegis.core.clock import utcnow
from aegis.core.config import DockerScope
from aegis.supervision.containers import set_maintenance
from tests.support.containers import HEALS, make_unhealthy, wait_health
from tests.support.rows import count, row_of
from tests.support.supervision import supervisor

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]
SECOND = timedelta(seconds=1)


def test_a_steady_sweep_writes_nothing_and_the_next_change_is_still_seen(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    steady, turning, paused = (make_container(HEALS) for _ in range(3))
    for container in (steady, turning, paused):
        wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)
    sv.reconcile(t0 + SECOND)  # the rows the first sweep wrote, read once more
    versions = {c.name: row_of(database_url, c.name)["version"]
                for c in (steady, turning, paused)}
    sv.reconcile(t0 + 2 * SECOND)
    assert {name: row_of(database_url, name)["version"] for name in versions} == versions

    make_unhealthy(docker_client, turning)  # its listing entry changes
    set_maintenance(app, paused.name, t0, 3600)  # its row changes
    sv.reconcile(t0 + 3 * SECOND)
    assert count(database_url, "container_unhealthy", turning.name) == 1
    assert row_of(database_url, paused.name)["state"] == "maintenance"
    assert row_of(database_url, steady.name)["version"] == versions[steady.name]

    set_maintenance(app, paused.name, t0 + 4 * SECOND, None)
    sv.reconcile(t0 + 5 * SECOND)
    assert row_of(database_url, paused.name)["state"] == "ok"

    sv.settings = replace(app.settings, docker_scope=DockerScope.LABELED)  # new settings
    sv.reconcile(t0 + 6 * SECOND)
    assert row_of(database_url, steady.name)["state"] == "ignored"
