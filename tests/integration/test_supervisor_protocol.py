"""The three-strike protocol against a real Docker engine and a real PostgreSQL.

Strike timers are driven by an injected ``now`` (t0, t0 + interval, ...) rather than by
sleeping; the only waits are for Docker's own health checks to report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import docker
import pytest

from aegis import api
from aegis.core.clock import utcnow
from aegis.core.config import load_settings
from aegis.scheduling.repository import JobRun
from aegis.supervision.containers import acknowledge, listing, set_maintenance
from aegis.supervision.docker import EngineAvailability, Sighting, sighting_from_event
from aegis.supervision.protocol.strikes import Action
from aegis.supervision.service import supervise_once
from aegis.supervision.supervisor import Supervisor
from aegis.supervision.watcher import ContainerEvents
from tests.support.containers import (
    BREAKS_FOR_GOOD,
    HEALS,
    HEALTHCHECK,
    NEVER_HEALTHY,
    make_unhealthy,
    started_at,
    wait_health,
    wait_status,
)
from tests.support.postgres import OwnPostgres
from tests.support.rows import count, events_of, execute, row_of, sql_rows
from tests.support.supervision import INTERVAL, supervisor
from tests.support.waiting import wait_for

# these tests restart containers: only on an engine with none but the suite's own
pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]

# HEALTHCHECK's probe, saying why it fails (padded: aegis keeps the output trimmed).
PROBE_LINE = "probe: /healthy is missing"
TALKING_HEALTHCHECK = {**HEALTHCHECK, "test": [
    "CMD", "/bin/sh", "-c", f"test -f /healthy || {{ echo '  {PROBE_LINE}  '; exit 1; }}"]}
# Crashes on its first two starts (Docker restarts it: on-failure), then BREAKS_FOR_GOOD.
CRASHES_TWICE_THEN_BREAKS = ("n=$(cat /starts 2>/dev/null || echo 0); echo $((n + 1)) > /starts; "
                             f"[ \"$n\" -ge 2 ] || exit 1; {BREAKS_FOR_GOOD}")


def test_unhealthy_to_strike_restart_and_one_escalation(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(CRASHES_TWICE_THEN_BREAKS, healthcheck=TALKING_HEALTHCHECK,
                               labels={"aegis.stop-timeout": "3s"},
                               restart_policy={"Name": "on-failure"})
    make_unhealthy(docker_client, container)
    assert docker_client.api.inspect_container(container.id)["RestartCount"] == 2

    run = app.scheduler.run_job("docker_health_check")
    assert isinstance(run, JobRun)
    assert run.status == "ok"
    assert run.result is not None
    assert run.result["strike1"] == 1
    assert run.result["unhealthy"] >= 1
    t0 = row_of(database_url, container.name)["strike_at"]
    first_start = started_at(docker_client, container)

    sv = supervisor(app, docker_client)
    sv.reconcile(t0 + INTERVAL / 2)
    assert started_at(docker_client, container) == first_start  # within the interval
    sv.reconcile(t0 + INTERVAL)
    assert started_at(docker_client, container) != first_start  # strike 2: restarted
    wait_health(docker_client, container, "unhealthy")
    sv.reconcile(t0 + 2 * INTERVAL)
    second_start = started_at(docker_client, container)
    sv.reconcile(t0 + 5 * INTERVAL)
    assert started_at(docker_client, container) == second_start  # escalated: hands off

    found = events_of(database_url, container.name)
    assert [(e["event_type"], e["importance"]) for e in found] == [
        ("container_unhealthy", "medium"), ("container_restarted", "high"),
        ("container_escalated", "critical")]
    restarted = found[1]["details"]
    assert {key: restarted[key] for key in (
        "probe_output", "probe_exit_code", "docker_restart_count", "restarts_last_hour",
        "stop_timeout_s", "host", "incident")} == {
        "probe_output": PROBE_LINE, "probe_exit_code": 1, "docker_restart_count": 2,
        "restarts_last_hour": 1, "stop_timeout_s": 3.0, "host": "test-host", "incident": 1}
    escalated = found[2]["details"]
    assert escalated["reason"] == "still unhealthy one strike interval after the restart"
    # aegis's restart is a start by hand to Docker: its own restart count starts again
    assert {key: escalated[key] for key in (
        "probe_output", "probe_exit_code", "docker_restart_count", "restarts_last_hour",
        "stop_timeout_s", "restart_policy", "status")} == {
        "probe_output": PROBE_LINE, "probe_exit_code": 1, "docker_restart_count": 0,
        "restarts_last_hour": 1, "stop_timeout_s": 3.0, "restart_policy": "on-failure",
        "status": "running"}

    alerts = sql_rows(database_url, "SELECT channel, dedup_key, importance::text AS importance, "
                      "body FROM outbox")
    assert [{k: v for k, v in alert.items() if k != "body"} for alert in alerts] == [
        {"channel": "alerts", "importance": "critical",
         "dedup_key": f"escalation:test-host:{container.name}:1"}]
    assert f"Last health probe: {PROBE_LINE}\n" in alerts[0]["body"]
    row = row_of(database_url, container.name)
    assert (row["state"], row["phase"], row["strikes"], row["last_action"]) == \
        ("escalated", "escalated", 3, "escalate")
    assert len(row["restarts"]) == 1

    # a person takes over; remediation is re-armed and a new incident can alert again
    assert acknowledge(app, container.name, t0 + 6 * INTERVAL)
    assert row_of(database_url, container.name)["state"] == "ok"
    sv.reconcile(t0 + 7 * INTERVAL)
    assert row_of(database_url, container.name)["incident"] == 2
    assert events_of(database_url, container.name)[-2]["event_type"] == \
        "container_acknowledged"


def test_a_container_that_heals_after_the_restart_recovers(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(HEALS)
    make_unhealthy(docker_client, container)
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)
    sv.reconcile(t0 + INTERVAL)
    wait_health(docker_client, container, "healthy")
    sv.reconcile(t0 + INTERVAL + timedelta(seconds=10))
    assert row_of(database_url, container.name)["state"] == "restarting"
    sv.reconcile(t0 + 3 * INTERVAL + timedelta(seconds=10))
    found = [e["event_type"] for e in events_of(database_url, container.name)]
    assert found == ["container_unhealthy", "container_restarted", "container_recovered"]
    assert sql_rows(database_url, "SELECT * FROM outbox") == []
    row = row_of(database_url, container.name)
    assert (row["state"], row["strikes"], len(row["restarts"])) == ("ok", 0, 1)


def test_the_strike_interval_label_sets_the_strike_timers_of_its_container(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    labelled = make_container(BREAKS_FOR_GOOD, labels={"aegis.strike-interval": "3m"})
    plain = make_container(BREAKS_FOR_GOOD)
    since = int(time.time()) - 1
    for container in (labelled, plain):
        make_unhealthy(docker_client, container)
    # strike 1 from Docker's own unhealthy event, as the watcher hands it over
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    ContainerEvents(sv).handle({**unhealthy_event(docker_client, labelled, since),
                     "timeNano": time.time_ns()}, t0)
    label_interval = timedelta(minutes=3)
    row = row_of(database_url, labelled.name)
    assert (row["state"], row["strike_at"], row["next_check_at"]) == \
        ("striking", t0, t0 + label_interval)
    sv.reconcile(t0)
    assert row_of(database_url, labelled.name)["next_check_at"] == t0 + label_interval
    assert row_of(database_url, plain.name)["next_check_at"] == t0 + INTERVAL
    starts = {c.name: started_at(docker_client, c) for c in (labelled, plain)}

    # the setting's interval: the plain one is restarted, the labelled one is not
    assert sv.check_due(t0 + INTERVAL) == 1
    assert started_at(docker_client, labelled) == starts[labelled.name]
    assert started_at(docker_client, plain) != starts[plain.name]
    assert sv.check(labelled.id, t0 + label_interval - timedelta(seconds=1)) == "none"
    assert started_at(docker_client, labelled) == starts[labelled.name]
    # the label's interval: strike 2, and strike 3 is due one label interval later
    assert sv.check(labelled.id, t0 + label_interval) == "restart"
    assert started_at(docker_client, labelled) != starts[labelled.name]
    row = row_of(database_url, labelled.name)
    assert (row["state"], row["next_check_at"]) == ("restarting", t0 + 2 * label_interval)
    assert [e["event_type"] for e in events_of(database_url, labelled.name)] == [
        "container_unhealthy", "container_restarted"]


def test_only_an_escalated_container_alerts_when_it_recovers(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    # protected: escalated at strike 2 without a restart; the other recovers from strike 1
    escalated = make_container(HEALS, labels={"aegis.protect": "true"})
    struck = make_container(HEALS)
    for container in (escalated, struck):
        make_unhealthy(docker_client, container)
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)
    struck.exec_run(["touch", "/healthy"])
    wait_health(docker_client, struck, "healthy")
    sv.reconcile(t0 + INTERVAL)
    assert row_of(database_url, escalated.name)["state"] == "escalated"
    escalated.exec_run(["touch", "/healthy"])
    wait_health(docker_client, escalated, "healthy")
    for step in (2, 4, 6):  # healthy from 2 intervals on; the stable period is 2 intervals
        sv.reconcile(t0 + step * INTERVAL)
    for container in (escalated, struck):
        assert events_of(database_url, container.name)[-1]["event_type"] == \
            "container_recovered", container.name
    alerts = sql_rows(database_url, "SELECT channel, dedup_key, importance::text AS importance, "
                      "title FROM outbox ORDER BY id")
    assert alerts == [
        {"channel": "alerts", "importance": "critical", "title":
         f"{escalated.name} escalated on test-host",
         "dedup_key": f"escalation:test-host:{escalated.name}:1"},
        {"channel": "alerts", "importance": "medium", "title":
         f"{escalated.name} recovered on test-host",
         "dedup_key": f"recovery:test-host:{escalated.name}:1"}]


@dataclass(frozen=True)
class NoRestart:
    """A container aegis must not restart: its labels, the settings, what it shows."""

    labels: dict[str, str]
    overrides: dict[str, Any]
    expected_state: str
    escalates: bool


@pytest.mark.parametrize("case", [
    NoRestart({"aegis.protect": "TRUE"}, {}, "escalated", True),
    NoRestart({"aegis.enable": "no"}, {}, "ignored", False),
    NoRestart({"aegis.maintenance": "yes"}, {}, "maintenance", False),
    NoRestart({}, {"remediation": "observe"}, "escalated", True),
    NoRestart({}, {"docker_scope": "labeled"}, "ignored", False),
], ids=["protected", "opted-out", "maintenance", "observe", "out-of-scope"])
def test_containers_aegis_must_not_restart_are_never_restarted(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str, case: NoRestart) -> None:
    container = make_container(NEVER_HEALTHY, labels=case.labels)
    wait_health(docker_client, container, "unhealthy")
    first_start = started_at(docker_client, container)
    sv = supervisor(app, docker_client, **case.overrides)
    t0 = utcnow()
    for step in range(4):
        sv.reconcile(t0 + step * INTERVAL)
    assert started_at(docker_client, container) == first_start
    assert row_of(database_url, container.name)["state"] == case.expected_state
    types = [e["event_type"] for e in events_of(database_url, container.name)]
    assert ("container_escalated" in types) is case.escalates
    assert "container_restarted" not in types


def test_aegis_itself_and_its_database_are_protected(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    own = make_container(NEVER_HEALTHY)
    database = make_container(NEVER_HEALTHY, labels={"com.docker.compose.service": "db"})
    wait_health(docker_client, own, "unhealthy")
    wait_health(docker_client, database, "unhealthy")
    starts = [started_at(docker_client, c) for c in (own, database)]
    sv = Supervisor(app, docker_client, own_ids=frozenset({own.id[:12]}))
    sv.settings = replace(app.settings, protected_containers=("db",))
    t0 = utcnow()
    for step in range(3):
        sv.reconcile(t0 + step * INTERVAL)
    assert [started_at(docker_client, c) for c in (own, database)] == starts
    for container in (own, database):
        assert row_of(database_url, container.name)["supervision"] == "protected"


def test_maintenance_from_the_command_pauses_action(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(HEALS)
    wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)  # aegis has seen it: maintenance names only containers it knows
    set_maintenance(app, container.name, t0, 3600)
    make_unhealthy(docker_client, container)
    sv.reconcile(t0)
    sv.reconcile(t0 + INTERVAL)
    assert events_of(database_url, container.name)[-1]["event_type"] == "container_maintenance"
    assert [v.state for v in listing(app, t0) if v.name == container.name] == ["maintenance"]
    # maintenance over: the protocol starts from strike 1
    sv.reconcile(t0 + timedelta(hours=1, seconds=1))
    assert events_of(database_url, container.name)[-1]["event_type"] == "container_unhealthy"


def ignoring_term(app: api.Aegis, client: Any,
                  make_container: Callable[..., Any]) -> tuple[Any, Supervisor, datetime]:
    """A healthy container whose shell ignores TERM (as PID 1 it does, with no trap),
    first seen by a supervisor at the returned t0."""
    container = make_container("touch /healthy; while :; do sleep 0.1; done")
    wait_health(client, container, "healthy")
    sv = supervisor(app, client)
    t0 = utcnow()
    sv.reconcile(t0)
    return container, sv, t0


def replay_events(client: Any, container: Any, sv: Supervisor, since: int, now: datetime,
                  **filters: str) -> int:
    """Hand the engine's events about ``container`` since ``since`` to ``sv`` at ``now``;
    returns how many there were."""
    events = list(client.api.events(since=since, until=int(time.time()) + 1, decode=True,
                                    filters={"container": container.id, **filters}))
    for event in events:
        ContainerEvents(sv).handle(event, now)
    return len(events)


def test_a_container_stopped_by_hand_stays_stopped(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container, sv, t0 = ignoring_term(app, docker_client, make_container)
    since = int(time.time()) - 1
    container.stop(timeout=1)  # killed after a second: exit code 137
    replay_events(docker_client, container, sv, since, t0 + timedelta(seconds=5))
    for step in range(1, 4):
        sv.reconcile(t0 + step * INTERVAL)
    assert docker_client.api.inspect_container(container.id)["State"]["Status"] == "exited"
    row = row_of(database_url, container.name)
    assert row["stopped_by_user"] is True
    assert row["state"] == "ok"
    assert events_of(database_url, container.name) == []


def test_unhealthy_while_being_stopped_is_no_strike_until_the_stop_timeout(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    # a real `docker kill -s TERM` leaves it running, as the seconds of a stop before its
    # KILL do, and its health check fails from then on
    container, sv, t0 = ignoring_term(app, docker_client, make_container)
    container.exec_run(["/bin/rm", "/healthy"])
    wait_health(docker_client, container, "unhealthy")
    since = int(time.time()) - 1
    container.kill(signal="SIGTERM")
    stop_at = t0 + timedelta(seconds=1)
    assert replay_events(docker_client, container, sv, since, stop_at, event="kill"), \
        "Docker reported no kill event"
    assert row_of(database_url, container.name)["stop_requested_at"] == stop_at
    assert sv.check(container.id, stop_at + timedelta(seconds=5)) == "none"
    assert events_of(database_url, container.name) == []
    # the stop timeout (10 s) and its grace have passed and it still runs: strike 1
    assert sv.check(container.id, stop_at + timedelta(seconds=41)) == "strike1"
    assert [e["event_type"] for e in events_of(database_url, container.name)] == [
        "container_unhealthy"]


def test_a_crashed_container_is_escalated_once_not_restarted(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container("touch /healthy; sleep 1; exit 3")
    wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)
    wait_status(docker_client, container, "exited")
    for step in range(1, 4):
        sv.reconcile(t0 + step * INTERVAL)
    assert docker_client.api.inspect_container(container.id)["State"]["Status"] == "exited"
    found = events_of(database_url, container.name)
    assert [e["event_type"] for e in found] == ["container_escalated"]
    assert found[0]["details"]["exit_code"] == 3
    assert found[0]["details"]["restart_policy"] == "no"
    # a listing does not say: the sweep inspected it before deciding
    assert found[0]["details"]["reason"] == ("container exited (exit code 3) and Docker is not "
                                             "restarting it (restart policy no)")
    assert len(sql_rows(database_url, "SELECT * FROM outbox")) == 1


def test_a_dependent_container_is_restarted_after_the_one_it_depends_on(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    main = make_container(HEALS)
    sidecar = make_container(NEVER_HEALTHY, healthcheck=None,
                             network_mode=f"container:{main.id}")
    make_unhealthy(docker_client, main)
    sidecar_start = started_at(docker_client, sidecar)
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    sv.reconcile(t0)
    sv.reconcile(t0 + INTERVAL)
    main_start, sidecar_restart = (started_at(docker_client, c) for c in (main, sidecar))
    assert sidecar_restart != sidecar_start
    assert sidecar_restart > main_start  # ISO-8601 strings of one clock sort in time order
    dependent = events_of(database_url, sidecar.name)
    assert [(e["event_type"], e["details"]["network_of"]) for e in dependent] == \
        [("container_restarted", main.name)]


def test_a_new_daemon_carries_on_without_a_second_restart_inside_the_back_off(
        settings: Any, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(BREAKS_FOR_GOOD)
    make_unhealthy(docker_client, container)
    t0 = utcnow()
    with api.connect(settings, migrate=False) as first:
        sv = supervisor(first, docker_client)
        sv.reconcile(t0)
        sv.reconcile(t0 + INTERVAL)  # strike 2: restart; then the process dies
    wait_health(docker_client, container, "unhealthy")
    after_restart = started_at(docker_client, container)
    with api.connect(settings, migrate=False) as second:
        sv = supervisor(second, docker_client)
        sv.reconcile(t0 + INTERVAL + timedelta(seconds=5))
        assert started_at(docker_client, container) == after_restart
        sv.reconcile(t0 + 2 * INTERVAL)
    assert started_at(docker_client, container) == after_restart
    row = row_of(database_url, container.name)
    assert (row["state"], len(row["restarts"])) == ("escalated", 1)
    found = [e["event_type"] for e in events_of(database_url, container.name)]
    assert found.count("container_restarted") == 1


def test_a_bad_label_is_reported_once_and_treated_as_unset(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(HEALS, labels={"aegis.protect": "maybe"})
    wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    t0 = utcnow()
    for step in range(3):
        sv.reconcile(t0 + step * INTERVAL)
    found = events_of(database_url, container.name)
    assert [e["event_type"] for e in found] == ["container_bad_label"]
    assert "aegis.protect='maybe'" in found[0]["summary"]
    row = row_of(database_url, container.name)
    assert row["supervision"] == "supervised"
    # the aegis.* labels as set, for the status page (the compose ones stay out)
    assert row["labels"] == {"aegis.protect": "maybe",
                             "aegis.test": container.labels["aegis.test"]}


def test_docker_unavailable_is_recorded_once_per_outage(
        app: api.Aegis, docker_client: Any, database_url: str) -> None:
    def gone() -> Any:
        return docker.DockerClient(base_url="unix:///nonexistent/docker.sock", timeout=2)

    for _ in range(3):
        result = supervise_once(app, utcnow(), client_factory=gone)
        assert result["docker_available"] is False
    assert supervise_once(app, utcnow())["docker_available"] is True
    EngineAvailability().note(app, True)
    types = [r["event_type"] for r in sql_rows(
        database_url, "SELECT event_type FROM episodic_memory "
        "WHERE event_type LIKE 'docker_%%able' ORDER BY id")]
    assert types == ["docker_unavailable", "docker_available"]


def unhealthy_event(client: Any, container: Any, since: int) -> dict[str, Any]:
    events = client.api.events(since=since, until=int(time.time()) + 1, decode=True,
                               filters={"container": container.id})
    found = [e for e in events if e.get("Action") == "health_status: unhealthy"]
    assert found, f"no unhealthy event for {container.name}"
    return dict(found[0])


def test_a_fresh_unhealthy_event_is_struck_with_what_the_event_carries(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(HEALS, labels={"com.docker.compose.project": "shop",
                                              "com.docker.compose.service": "web"})
    since = int(time.time()) - 1
    make_unhealthy(docker_client, container)
    event = unhealthy_event(docker_client, container, since)
    # the container heals before aegis reads the event: a fresh event is acted on as it
    # stands (strike 1 only records; a restart is always decided on an inspect)
    container.exec_run(["touch", "/healthy"])
    wait_health(docker_client, container, "healthy")
    ContainerEvents(supervisor(app, docker_client)).handle(event, utcnow())
    [strike] = events_of(database_url, container.name)
    assert strike["event_type"] == "container_unhealthy"
    assert strike["details"]["compose_project"] == "shop"
    assert strike["details"]["compose_service"] == "web"
    assert strike["details"]["container_id"] == container.id[:12]
    row = row_of(database_url, container.name)
    assert (row["state"], row["strikes"], row["health"]) == ("striking", 1, "unhealthy")


def test_a_replayed_unhealthy_event_is_checked_against_docker_first(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(HEALS)
    since = int(time.time()) - 1
    make_unhealthy(docker_client, container)
    event = unhealthy_event(docker_client, container, since)
    container.exec_run(["touch", "/healthy"])
    wait_health(docker_client, container, "healthy")
    stale = {**event, "timeNano": event["timeNano"] - 60 * 10**9}  # as after a reconnection
    sv = supervisor(app, docker_client)
    ContainerEvents(sv).handle(stale, utcnow())
    assert events_of(database_url, container.name) == []
    # and an event for a container already striking goes through an inspect too
    make_unhealthy(docker_client, container)
    sv.reconcile(utcnow())
    assert [e["event_type"] for e in events_of(database_url, container.name)] == [
        "container_unhealthy"]
    container.exec_run(["touch", "/healthy"])
    wait_health(docker_client, container, "healthy")
    ContainerEvents(sv).handle({**event, "timeNano": time.time_ns()}, utcnow())
    row = row_of(database_url, container.name)
    assert (row["strikes"], row["health"]) == (1, "healthy")


def fresh(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as if it had just arrived."""
    return {**event, "timeNano": time.time_ns()}


def unhealthy_sightings(client: Any, containers: list[Any]) -> list[Sighting]:
    """Each container made unhealthy, as its fresh ``unhealthy`` event shows it."""
    since = int(time.time()) - 1
    for container in containers:
        make_unhealthy(client, container)
    found = [sighting_from_event(fresh(unhealthy_event(client, container, since)))
             for container in containers]
    assert all(found)
    return [seen for seen in found if seen is not None]


def test_the_strike_1s_of_events_queued_together_are_saved_in_one_transaction(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """A burst's unhealthy events, queued together, are struck together: their rows read
    at once and every strike 1 committed in one transaction, each as it would be alone.
    A container already in an incident among them is checked instead: its next step is
    a restart or an escalation, never taken on an event's word."""
    containers = [make_container(HEALS) for _ in range(4)]
    sightings = unhealthy_sightings(docker_client, containers)
    handed: list[str] = []
    events = ContainerEvents(supervisor(app, docker_client),
                             check=lambda found, _now: handed.append(found))
    events.strike(sightings[-1:], utcnow())  # the last one is striking already
    events.strike(sightings, utcnow())
    assert handed == [containers[-1].id]
    strikes = sql_rows(database_url, "SELECT details->>'container' AS name, "
                       "xmin::text AS tx FROM episodic_memory "
                       "WHERE event_type = 'container_unhealthy' ORDER BY id")
    assert [s["name"] for s in strikes] == [c.name for c in containers[-1:] + containers[:-1]]
    batch = {s["tx"] for s in strikes[1:]}
    assert len(batch) == 1
    assert strikes[0]["tx"] not in batch
    for container in containers:
        row = row_of(database_url, container.name)
        assert (row["state"], row["strikes"], row["health"]) == ("striking", 1, "unhealthy")
    assert {r["tx"] for r in sql_rows(
        database_url, "SELECT xmin::text AS tx FROM containers WHERE name = ANY(%s)",
        [c.name for c in containers[:-1]])} == batch


def test_a_batch_drops_only_the_decision_whose_row_changed_since_it_was_read(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    containers = [make_container(HEALS) for _ in range(3)]
    for container in containers:
        wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    sv.reconcile(utcnow())  # their rows, healthy
    sightings = unhealthy_sightings(docker_client, containers)
    rows = sv.rows([seen.name for seen in sightings])
    # another daemon's save meanwhile: the middle row is not the one read any more
    execute(database_url, "UPDATE containers SET version = version + 1 WHERE name = %s",
            containers[1].name)
    results = sv.evaluate_all([(seen, rows[seen.name]) for seen in sightings], utcnow())
    assert [action for action, _ in results] == [Action.STRIKE1, Action.NONE, Action.STRIKE1]
    assert [count(database_url, "container_unhealthy", c.name) for c in containers] == [
        1, 0, 1]


def test_a_lone_strike_is_one_statement_that_writes_its_event_only_with_its_row(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """A decision with one event and nothing else to route is saved by one statement,
    with no transaction of its own: the event is recorded only if the row is written."""
    containers = [make_container(HEALS) for _ in range(3)]
    for container in containers:
        wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    sv.reconcile(utcnow())
    first, stale, fresh = unhealthy_sightings(docker_client, containers)
    rows = sv.rows([first.name, stale.name, fresh.name])
    # the first strike of a daemon asks whether a storm is open; those after it need not
    assert sv.evaluate_all([(first, rows[first.name])], utcnow())[0][0] == Action.STRIKE1
    execute(database_url, "UPDATE containers SET version = version + 1 WHERE name = %s",
            stale.name)
    assert sv.evaluate_all([(stale, rows[stale.name])], utcnow())[0][0] == Action.NONE
    assert count(database_url, "container_unhealthy", stale.name) == 0
    assert row_of(database_url, stale.name)["strikes"] == 0
    assert sv.evaluate_all([(fresh, rows[fresh.name])], utcnow())[0][0] == Action.STRIKE1
    [event] = sql_rows(database_url, "SELECT xmin::text AS tx FROM episodic_memory WHERE "
                       "event_type = 'container_unhealthy' AND details->>'container' = %s",
                       fresh.name)
    [row] = sql_rows(database_url, "SELECT xmin::text AS tx, strikes FROM containers "
                     "WHERE name = %s", fresh.name)
    assert (row["tx"], row["strikes"]) == (event["tx"], 1)


def test_a_strike_from_a_kept_row_changed_since_is_decided_again_from_the_table(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """Strike 1 is decided from the row this process last read or wrote, without asking
    the table first; a row changed since (another daemon's save) drops that decision, and
    the container is decided again from the table's row: struck once when the change left
    it healthy, checked (not struck again) when the change was a strike of its own."""
    containers = [make_container(HEALS) for _ in range(2)]
    for container in containers:
        wait_health(docker_client, container, "healthy")
    sv = supervisor(app, docker_client)
    sv.reconcile(utcnow())  # their rows, healthy, kept by this process
    sightings = unhealthy_sightings(docker_client, containers)
    execute(database_url, "UPDATE containers SET version = version + 1 WHERE name = %s",
            containers[0].name)
    execute(database_url, "UPDATE containers SET version = version + 1, phase = 'striking', "
            "strikes = 1 WHERE name = %s", containers[1].name)
    handed: list[str] = []
    ContainerEvents(sv, check=lambda found, _now: handed.append(found)).strike(
        sightings, utcnow())
    assert count(database_url, "container_unhealthy", containers[0].name) == 1
    assert row_of(database_url, containers[0].name)["strikes"] == 1
    assert count(database_url, "container_unhealthy", containers[1].name) == 0
    assert handed == [containers[1].id]


def test_a_batch_decided_while_the_database_is_down_is_spooled_and_written_back_once(
        own_postgres: OwnPostgres, aegis_env: dict[str, str], docker_client: Any,
        make_container: Callable[..., Any]) -> None:
    url = own_postgres.url
    containers = [make_container(HEALS) for _ in range(3)]
    for container in containers:
        wait_health(docker_client, container, "healthy")
    with api.connect(load_settings({**aegis_env, "AEGIS_DATABASE_URL": url}),
                     migrate=False) as own:
        sv = supervisor(own, docker_client)
        sv.reconcile(utcnow())  # their rows, kept for the outage
        sightings = unhealthy_sightings(docker_client, containers)
        own_postgres.stop()
        try:
            ContainerEvents(sv).strike(sightings, utcnow())
            # each its own record, as alone
            assert len(own.store.spool.records("container_decision")) == 3
        finally:
            own_postgres.start()
        wait_for(own.db.ping, 30)
        assert own.store.replay_spool() == 3
        assert own.store.replay_spool() == 0
    assert [count(url, "container_unhealthy", c.name) for c in containers] == [1, 1, 1]
    for container in containers:
        row = row_of(url, container.name)
        assert (row["state"], row["strikes"]) == ("striking", 1)


def test_events_that_need_an_inspect_are_handed_to_the_checks_never_inspected_in_line(
        app: api.Aegis, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    """The watcher's loop strikes fresh unhealthy events itself; a start, a stale or
    healthy health event needs an inspect, which the engine may be slow to answer: those
    go to the check it is given (the watcher's pool), so the next event is not held up."""
    container = make_container(HEALS)
    since = int(time.time()) - 1
    make_unhealthy(docker_client, container)
    event = unhealthy_event(docker_client, container, since)
    handed: list[str] = []
    events = ContainerEvents(supervisor(app, docker_client),
                             check=lambda found, _now: handed.append(found))
    stale = {**event, "timeNano": event["timeNano"] - 60 * 10**9}
    start = {"Type": "container", "Action": "start", "id": container.id,
             "Actor": {"ID": container.id, "Attributes": {"name": container.name}}}
    for needs_inspect in (stale, start):
        events.handle(needs_inspect, utcnow())
    assert handed == [container.id, container.id]
    assert events_of(database_url, container.name) == []  # nothing judged in line
    events.handle({**event, "timeNano": time.time_ns()}, utcnow())  # fresh: struck here
    assert [e["event_type"] for e in events_of(database_url, container.name)] == [
        "container_unhealthy"]
    assert handed == [container.id, container.id]
