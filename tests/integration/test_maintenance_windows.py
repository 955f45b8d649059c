"""Recurring maintenance windows against a real Docker engine and a real PostgreSQL, on
an injected clock: a nightly window across the night the clocks spring forward in
Europe/Berlin holds back every strike, restart and alert of the containers it covers; at
its end a container still unhealthy starts one normal incident, a healthy one nothing,
and the events watcher does so at the end without waiting for a Docker event."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aegis import api
from aegis.supervision.containers import listing
from aegis.supervision.protocol.windows import LABEL, LABEL_TIMEZONE
from tests.support.clock import Clock
from tests.support.containers import BREAKS_FOR_GOOD, HEALS, make_unhealthy, started_at, wait_health
from tests.support.outbox import outbox
from tests.support.rows import events_of, events_of_type, row_of, types_of
from tests.support.supervision import INTERVAL, running_watcher, supervisor
from tests.support.waiting import wait_for

# these tests let aegis restart containers: only on an engine with none but the suite's own
pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

# 01:30 CET for two hours, on the night of 29 March 2026: the clocks jump from 02:00 to
# 03:00 at 01:00 UTC, so the window runs 00:30-02:30 UTC (01:30 CET to 04:30 CEST).
NIGHTLY = "30 1 * * *"
WINDOW_START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
WINDOW_END = datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
ALERT_TYPES = ("container_unhealthy", "container_restarted", "container_escalated")


@pytest.fixture
def prefix() -> str:
    """The names of this test's containers begin so (a glob of the window's table)."""
    return f"aegis-test-window-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def window_app(aegis_env: dict[str, str], tmp_path: Path, prefix: str
               ) -> Iterator[api.Aegis]:
    """aegis in Europe/Berlin, acting on labelled containers only, with the nightly window
    of its configuration file covering the containers named ``<prefix>-backup-*``."""
    config = tmp_path / "aegis.toml"
    config.write_text(f"""
[[maintenance]]
name = "nightly-backup"
containers = ["{prefix}-backup-*"]
schedule = "{NIGHTLY}"
duration = "2h"
""", encoding="utf-8")
    settings = api.load_settings({**aegis_env, "AEGIS_CONFIG": str(config),
                                  "AEGIS_TIMEZONE": "Europe/Berlin",
                                  "AEGIS_DOCKER_SCOPE": "labeled"})
    with api.connect(settings, migrate=False) as opened:
        yield opened


def test_a_nightly_window_across_spring_forward_holds_everything_back(
        window_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str, prefix: str) -> None:
    app = window_app
    # one container covered by the configuration's table, the other by its own label
    broken = make_container(BREAKS_FOR_GOOD, name=f"{prefix}-backup-db", labels={
        "aegis.enable": "true", "aegis.max-restarts": "1"})
    healer = make_container(HEALS, name=f"{prefix}-web", labels={
        "aegis.enable": "true", LABEL: f"{NIGHTLY}/2h", LABEL_TIMEZONE: "Europe/Berlin"})
    sv = supervisor(app, docker_client)
    wait_health(docker_client, healer, "healthy")
    wait_health(docker_client, broken, "healthy")
    sv.reconcile(WINDOW_START - timedelta(minutes=30))  # seen healthy before the window
    starts = {c.name: started_at(docker_client, c) for c in (broken, healer)}

    make_unhealthy(docker_client, broken)
    make_unhealthy(docker_client, healer)
    # inside the window, through the jump at 01:00 UTC and well past two strike intervals
    for minutes in (1, 15, 29, 31, 60, 119):
        sv.reconcile(WINDOW_START + timedelta(minutes=minutes))
    for container in (broken, healer):
        assert started_at(docker_client, container) == starts[container.name]
        assert not set(types_of(database_url, container.name)) & set(ALERT_TYPES)
    assert outbox(app) == []
    shown = {v.name: v.state for v in listing(app, WINDOW_START + timedelta(hours=1))}
    assert shown[broken.name] == shown[healer.name] == "maintenance"
    assert events_of_type(database_url, "maintenance_window_ended") == []

    healer.exec_run(["touch", "/healthy"])  # the planned work is over for this one
    wait_health(docker_client, healer, "healthy")
    # the end: each container's timer falls due, no Docker event needed
    assert sv.check_due(WINDOW_END) == 2
    assert types_of(database_url, broken.name)[-1] == "container_unhealthy"
    assert not set(types_of(database_url, healer.name)) & set(ALERT_TYPES)
    ended = {e["details"]["window"]: e for e in
             events_of_type(database_url, "maintenance_window_ended")}
    assert set(ended) == {"nightly-backup", f"{LABEL} of {healer.name}"}
    assert all(e["importance"] == "low" for e in ended.values())
    assert ended["nightly-backup"]["details"]["held"] == {broken.name: ["unhealthy"]}
    assert ended["nightly-backup"]["details"]["start"] == WINDOW_START.isoformat()
    assert ended["nightly-backup"]["details"]["end"] == WINDOW_END.isoformat()

    # the normal protocol from strike 1: a restart, then one escalation, one alert
    sv.reconcile(WINDOW_END + INTERVAL)
    assert started_at(docker_client, broken) != starts[broken.name]
    wait_health(docker_client, broken, "unhealthy")
    for step in (2, 3, 5):
        sv.reconcile(WINDOW_END + step * INTERVAL)
    assert [e["event_type"] for e in events_of(database_url, broken.name)
            if e["event_type"] in ALERT_TYPES] == list(ALERT_TYPES)
    alerts = [row for row in outbox(app) if row["channel"] == "alerts"]
    assert len(alerts) == 1
    assert broken.name in alerts[0]["title"] + alerts[0]["body"]
    assert started_at(docker_client, healer) == starts[healer.name]
    assert len(events_of_type(database_url, "maintenance_window_ended")) == 2


def test_the_watcher_judges_a_container_at_its_windows_end_without_a_docker_event(
        fast_app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    clock = Clock(WINDOW_START + timedelta(hours=1))  # 03:30 CEST: inside
    container = make_container(HEALS, labels={
        "aegis.enable": "true", LABEL: f"{NIGHTLY}/2h", LABEL_TIMEZONE: "Europe/Berlin"})
    wait_health(docker_client, container, "healthy")
    with running_watcher(fast_app, clock=clock):
        make_unhealthy(docker_client, container)  # one health_status event, inside
        wait_for(lambda: row_of(database_url, container.name)["next_check_at"] == WINDOW_END,
                 20, "the window's end as the container's timer")
        assert row_of(database_url, container.name)["state"] == "maintenance"
        clock.now = WINDOW_END  # no Docker event comes: the engine's health is unchanged
        wait_for(lambda: "container_unhealthy" in types_of(database_url, container.name),
                 20, "strike 1 at the window's end")
        wait_for(lambda: events_of_type(database_url, "maintenance_window_ended"), 20,
                 "the window's one event")
    [ended] = events_of_type(database_url, "maintenance_window_ended")
    assert ended["details"]["held"] == {container.name: ["unhealthy"]}
    assert types_of(database_url, container.name).count("container_unhealthy") == 1
