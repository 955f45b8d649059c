"""Restarts against a real engine: the watcher's restarts run beside the event stream,
a restart under way is not judged, the containers sharing a restarted container's
network are restarted only where aegis may act on them, and a restart a socket proxy
forbids says so."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from aegis import api
from aegis.core.clock import utcnow
from aegis.core.config import load_settings
from aegis.supervision.containers import set_maintenance
from aegis.supervision.docker import docker_client as docker_client_of_aegis
from aegis.supervision.docker import docker_time, sighting_from_inspect
from aegis.supervision.protocol.strikes import Phase
from aegis.supervision.repository import Containers, ContainerUpdate
from aegis.supervision.restarter import RESTART_FORBIDDEN_HINT
from aegis.supervision.supervisor import SupervisionState, Supervisor
from aegis.supervision.watcher import Watcher
from tests.images import socket_proxy_profile
from tests.support.containers import (
    HEALS,
    HEALTHCHECK,
    HEALTHY_ON_FIRST_START,
    IGNORES_TERM,
    NEVER_HEALTHY,
    make_unhealthy,
    started_at,
    wait_health,
)
from tests.support.rows import events_of, sql_rows
from tests.support.supervision import INTERVAL, running_watcher, supervisor
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

# Healthy while /healthy exists, which only its first start creates; ignores SIGTERM, so a
# restart takes its whole stop timeout.
STUBBORN = f"{HEALTHY_ON_FIRST_START}{IGNORES_TERM}"
QUICK_PROBE = {**HEALTHCHECK, "interval": 300_000_000}
STOP_TIMEOUT_S = 6


@pytest.fixture
def watching(fast_app: api.Aegis) -> Iterator[Watcher]:
    with running_watcher(fast_app) as running:
        yield running


def event_time(url: str, name: str, event_type: str) -> datetime:
    found = sql_rows(url, "SELECT timestamp FROM episodic_memory WHERE event_type = %s "
                     "AND details->>'container' = %s", event_type, name)
    assert len(found) == 1, f"{event_type} of {name}: {found}"
    return found[0]["timestamp"]  # type: ignore[no-any-return]


def test_a_slow_restart_holds_up_neither_other_containers_nor_its_own_judgement(
        watching: Watcher, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    labels = {"aegis.enable": "true", "aegis.stop-timeout": f"{STOP_TIMEOUT_S}s"}
    slow = make_container(STUBBORN, labels=labels, healthcheck=QUICK_PROBE)
    other = make_container(HEALS, labels={"aegis.enable": "true"}, healthcheck=QUICK_PROBE)
    wait_health(docker_client, other, "healthy")
    before = started_at(docker_client, slow)
    make_unhealthy(docker_client, slow)
    # strike 1, then strike 2 two seconds later: a restart that takes STOP_TIMEOUT_S
    wait_for(lambda: sql_rows(database_url, "SELECT 1 FROM containers WHERE name = %s AND "
                              "phase = 'restarting'", slow.name), what="the slow restart")
    other.exec_run(["rm", "-f", "/healthy"])
    wait_for(lambda: started_at(docker_client, slow) != before, timeout_s=STOP_TIMEOUT_S + 30,
             what="the slow restart done")
    restarted_at = docker_time(started_at(docker_client, slow))
    assert restarted_at is not None
    wait_for(lambda: sql_rows(database_url, "SELECT 1 FROM episodic_memory WHERE "
                              "event_type = 'container_escalated' AND "
                              "details->>'container' = %s", slow.name),
             timeout_s=30, what="the slow container's escalation")
    # the other container was struck while the slow one was still stopping
    assert event_time(database_url, other.name, "container_unhealthy") < restarted_at
    # the slow one's strike timer fell due during its restart: it was judged only after
    assert event_time(database_url, slow.name, "container_escalated") > restarted_at
    assert [e["event_type"] for e in events_of(database_url, slow.name)] == [
        "container_unhealthy", "container_restarted", "container_escalated"]
    restarted = events_of(database_url, slow.name)[1]
    assert restarted["details"]["stop_timeout_s"] == STOP_TIMEOUT_S


def test_dependents_are_restarted_only_where_aegis_may_act(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    main = make_container(HEALS)
    network = {"network_mode": f"container:{main.id}"}
    plain = make_container(HEALS, healthcheck=None, **network)
    protected = make_container(HEALS, healthcheck=None, labels={"aegis.protect": "true"},
                               **network)
    opted_out = make_container(HEALS, healthcheck=None, labels={"aegis.enable": "no"},
                               **network)
    paused_label = make_container(HEALS, healthcheck=None,
                                  labels={"aegis.maintenance": "true"}, **network)
    paused_by_hand = make_container(HEALS, **network)
    dependents = (plain, protected, opted_out, paused_label, paused_by_hand)
    wait_health(docker_client, paused_by_hand, "healthy")
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)  # paused_by_hand has a health check: its row exists from here
    set_maintenance(app, paused_by_hand.name, t0, 3600)
    make_unhealthy(docker_client, main)
    starts = {c.name: started_at(docker_client, c) for c in dependents}
    sv.reconcile(t0 + timedelta(seconds=1))
    sv.reconcile(t0 + timedelta(seconds=1) + INTERVAL)
    restarted = {c.name for c in dependents if started_at(docker_client, c) != starts[c.name]}
    assert restarted == {plain.name}
    assert [e["event_type"] for e in events_of(database_url, plain.name)] == [
        "container_restarted"]
    skipped = {c.name: [(e["event_type"], e["details"]["skipped_because"])
                        for e in events_of(database_url, c.name)
                        if e["event_type"] == "container_dependent_skipped"]
               for c in dependents[1:]}
    assert skipped == {
        protected.name: [("container_dependent_skipped", "protected")],
        opted_out.name: [("container_dependent_skipped", "opted out (aegis.enable=false)")],
        paused_label.name: [("container_dependent_skipped", "in maintenance")],
        paused_by_hand.name: [("container_dependent_skipped", "in maintenance")]}


# pytest hands each fixture in as an argument
def test_a_restart_a_socket_proxy_forbids_is_one_log_line_and_a_failed_restart(  # noqa: PLR0913
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str, socket_proxy: Callable[[dict[str, str]], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    container = make_container(NEVER_HEALTHY)
    wait_health(docker_client, container, "unhealthy")
    first_start = started_at(docker_client, container)
    url = socket_proxy({**socket_proxy_profile(), "ALLOW_RESTARTS": "0"})
    monkeypatch.setenv("DOCKER_HOST", url)  # as the daemon finds its engine
    through_proxy = docker_client_of_aegis()
    try:
        sv = supervisor(app, through_proxy)
        t0 = utcnow()
        with capture_logs() as logs:
            sv.reconcile(t0)
            sv.reconcile(t0 + INTERVAL)  # strike 2: the proxy answers 403
    finally:
        through_proxy.close()

    assert started_at(docker_client, container) == first_start
    assert [line for line in logs if line["event"] == "container_restart_forbidden"] == [
        {"event": "container_restart_forbidden", "container": container.name,
         "host": "test-host", "docker_host": url, "hint": RESTART_FORBIDDEN_HINT,
         "log_level": "error"}]
    assert "ALLOW_RESTARTS=1" in RESTART_FORBIDDEN_HINT
    found = events_of(database_url, container.name)
    assert [e["event_type"] for e in found] == ["container_unhealthy",
                                                "container_restart_failed"]
    assert "403" in found[1]["details"]["error"]


def test_a_labeled_scope_leaves_unlabelled_dependents_alone(
        aegis_env: dict[str, str], docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    settings = load_settings({**aegis_env, "AEGIS_DOCKER_SCOPE": "labeled"})
    main = make_container(HEALS, labels={"aegis.enable": "true"})
    unlabelled = make_container(HEALS, healthcheck=None,
                                network_mode=f"container:{main.id}")
    make_unhealthy(docker_client, main)
    before = started_at(docker_client, unlabelled)
    with api.connect(settings, migrate=False) as app:
        sv = supervisor(app, docker_client)
        t0 = utcnow()
        sv.reconcile(t0)
        sv.reconcile(t0 + INTERVAL)
    assert [e["event_type"] for e in events_of(database_url, main.name)][:2] == [
        "container_unhealthy", "container_restarted"]
    assert started_at(docker_client, unlabelled) == before
    assert [e["details"]["skipped_because"] for e in events_of(database_url, unlabelled.name)
            ] == ["outside the scope (AEGIS_DOCKER_SCOPE=labeled, no aegis.enable=true)"]


def test_a_person_stopping_a_container_is_still_told_apart_from_aegis_restarting_it(
        watching: Watcher, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """aegis's own restart sends a stop and a kill: they must not read as a person's."""
    name_label = {"aegis.enable": "true", "aegis.test-case": uuid.uuid4().hex[:6]}
    container = make_container(HEALS, labels=name_label, healthcheck=QUICK_PROBE)
    make_unhealthy(docker_client, container)
    wait_for(lambda: [e["event_type"] for e in events_of(database_url, container.name)
                      ][:2] == ["container_unhealthy", "container_restarted"],
             timeout_s=30, what="strike 2")
    wait_health(docker_client, container, "healthy")  # HEALS touches /healthy on start
    row = sql_rows(database_url, "SELECT stopped_by_user FROM containers WHERE name = %s",
                   container.name)[0]
    assert row["stopped_by_user"] is False
    container.stop(timeout=5)  # a person's stop
    wait_for(lambda: sql_rows(database_url, "SELECT 1 FROM containers WHERE name = %s "
                              "AND stopped_by_user", container.name), what="the stop seen")


@pytest.mark.serial  # bounds how late a timer falls due
@pytest.mark.parametrize("strike_interval", ["12s"])
def test_strike_timers_longer_than_the_poll_fall_due_on_time(
        watching: Watcher, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """Strike 2 and 3 are made when their timer falls due, not by a later poll or sweep:
    a 12 s timer outlives the watcher's 5 s polls."""
    container = make_container(STUBBORN.replace("trap '' TERM", "trap 'exit 0' TERM"),
                               labels={"aegis.enable": "true"}, healthcheck=QUICK_PROBE)
    make_unhealthy(docker_client, container)
    wait_for(lambda: len(events_of(database_url, container.name)) == 3, timeout_s=60,
             what="strike 1, the restart and the escalation")
    struck, restarted, escalated = (
        event_time(database_url, container.name, kind) for kind in (
            "container_unhealthy", "container_restarted", "container_escalated"))
    late_s = [(restarted - struck).total_seconds() - 12,
              (escalated - restarted).total_seconds() - 12]
    # a lost timer is caught by the next 5 s poll: at least 3 s late
    assert all(0 <= late < 2 for late in late_s), late_s


def test_a_restart_a_stopped_daemon_left_is_recorded_once_when_sweep_and_watcher_meet(
        app: api.Aegis, make_container: Callable[..., Any], database_url: str) -> None:
    """A daemon killed between saving a restart and recording it leaves the outcome to the
    next one, whose sweep and watcher (on a start event) both complete such restarts, and
    may at the same moment: the outcome is recorded once."""
    container = make_container(HEALS, healthcheck=HEALTHCHECK)
    client = docker_client_of_aegis()
    try:
        seen = sighting_from_inspect(client.api.inspect_container(container.id))
    finally:
        client.close()
    assert seen.started_at is not None
    decided = seen.started_at - timedelta(seconds=1)  # Docker started it after the decision
    containers = Containers(app.db)
    row = containers.first_row(app.settings.host, seen, True, utcnow())
    assert row is not None
    assert containers.save(replace(ContainerUpdate.keeping(row, utcnow()),
                                   phase=Phase.RESTARTING, strikes=2, incident=1,
                                   strike_at=decided, restarts=(decided,)))
    shared = SupervisionState()  # as the watcher's and the sweep's supervisors share it
    meeting = threading.Barrier(4)
    completed: list[int] = []

    def complete() -> None:
        own = docker_client_of_aegis()
        try:
            sv = Supervisor(app, own, own_ids=frozenset(), state=shared)
            meeting.wait()
            completed.append(sv.restarter.complete_restarts(own, utcnow()))
        finally:
            own.close()

    threads = [threading.Thread(target=complete) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e["event_type"] for e in events_of(database_url, container.name)] == [
        "container_restarted"]
    assert sorted(completed) == [0, 0, 0, 1]
