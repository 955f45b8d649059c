"""The HTTP endpoint against a real database: /healthz from the heartbeat file, /metrics
from aggregate queries, parsed with prometheus-client's own parser."""

from __future__ import annotations

import dataclasses
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aegis import api
from aegis.core.config import Settings
from aegis.scheduling.heartbeat import stale_after_s
from aegis.version import __version__
from aegis.web.http import serve
from tests.support.clock import Clock
from tests.support.containers import FAILS, HEALS, HEALTHCHECK, IDLE
from tests.support.daemons import Spawner, supervising_env
from tests.support.ports import free_port
from tests.support.postgres import drop_database
from tests.support.seeds import seed_metrics
from tests.support.waiting import wait_for
from tests.support.web import beat, serving
from tests.support.web import metric_samples as samples

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def endpoint(app: api.Aegis, clock: Clock) -> Iterator[str]:
    with serving(app, clock) as url:
        yield url


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def healthz_answers(port: int) -> bool:
    """Whether /healthz on 127.0.0.1:``port`` answers 200 (False while nothing listens)."""
    try:
        return get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    except OSError:
        return False


def test_healthz_is_200_while_the_heartbeat_is_fresh_and_503_when_the_loop_stalls(
        settings: Settings, endpoint: str, clock: Clock) -> None:
    status, content_type, body = get(endpoint + "/healthz")
    assert (status, content_type) == (503, "application/json")
    assert '"never_started"' in body

    beat(settings, NOW - timedelta(seconds=5))
    status, _, body = get(endpoint + "/healthz")
    assert status == 200
    assert '"ok"' in body

    # The loop stops writing; time moves past the stale limit.
    clock.now = NOW + timedelta(seconds=stale_after_s(settings.heartbeat_interval_s))
    status, _, body = get(endpoint + "/healthz")
    assert status == 503
    assert '"stale"' in body

    clock.now = NOW
    beat(settings, NOW, status="stopped")
    assert get(endpoint + "/healthz")[0] == 503
    assert get(endpoint + "/nothing-here")[0] == 404


def test_metrics_carry_every_series_and_parse_with_prometheus_client(
        settings: Settings, database_url: str, endpoint: str, clock: Clock) -> None:
    clock.now = datetime.now(UTC)  # the database's now() decides the 24-hour windows
    now = clock.now
    beat(settings, now - timedelta(seconds=3))
    seed_metrics(database_url, now)

    status, content_type, text = get(endpoint + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(text)

    assert found[("aegis_database_up", ())] == 1.0
    assert found[("aegis_job_runs", (("job", "health_check"), ("status", "ok")))] == 2
    assert found[("aegis_job_runs", (("job", "health_check"), ("status", "failed")))] == 1
    assert found[("aegis_job_runs", (("job", "morning_status"), ("status", "timeout")))] == 1
    hc = (("job", "health_check"),)
    assert found[("aegis_job_duration_seconds_count", hc)] == 3
    assert found[("aegis_job_duration_seconds_sum", hc)] == pytest.approx(43.2)
    assert found[("aegis_job_duration_seconds_bucket", (*hc, ("le", "0.5")))] == 1
    assert found[("aegis_job_duration_seconds_bucket", (*hc, ("le", "5.0")))] == 2
    assert found[("aegis_job_duration_seconds_bucket", (*hc, ("le", "+Inf")))] == 3
    assert found[("aegis_job_last_success_timestamp_seconds", hc)] == pytest.approx(
        (now - timedelta(minutes=5) + timedelta(seconds=3)).timestamp(), abs=1e-3)
    assert ("aegis_job_last_success_timestamp_seconds", (("job", "morning_status"),)) \
        not in found
    host = ("host", "test-host")
    assert found[("aegis_containers", (host, ("state", "escalated")))] == 2
    assert found[("aegis_containers", (host, ("state", "striking")))] == 1
    assert found[("aegis_container_strikes", (("container", "queue"), host))] == 3
    assert found[("aegis_container_restarts_total", (("container", "queue"), host))] == 2
    assert found[("aegis_container_escalations_total", (("container", "queue"), host))] == 1
    # every present container counts from 0, so increase() sees its first restart
    assert found[("aegis_container_restarts_total", (("container", "web"), host))] == 0
    assert found[("aegis_container_escalations_total", (("container", "db"), host))] == 0
    for name in ("aegis_outbox_pending", "aegis_outbox_depth"):  # the old name stays
        assert found[(name, (("channel", "alerts"),))] == 2
        assert found[(name, (("channel", "journal"),))] == 0
    assert found[("aegis_outbox_oldest_pending_age_seconds", (("channel", "alerts"),))] \
        == pytest.approx(1200, abs=60)
    assert found[("aegis_outbox_undelivered", (("channel", "alerts"),))] == 2
    assert found[("aegis_outbox_undelivered", (("channel", "journal"),))] == 0
    assert found[("aegis_outbox_delivery_failures", (("channel", "alerts"),))] == 8
    assert found[("aegis_events", (("importance", "high"),))] == 2
    assert found[("aegis_events", (("importance", "critical"),))] == 1
    assert found[("aegis_events", (("importance", "medium"),))] == 0
    assert found[("aegis_heartbeat_age_seconds", ())] == pytest.approx(3.0)
    assert found[("aegis_heartbeat_stale_after_seconds", ())] == 30.0
    assert found[("aegis_info", (host, ("version", __version__)))] == 1


def test_container_health_never_shows_a_container_without_a_health_check_as_unhealthy(
        settings: Settings, database_url: str, endpoint: str, clock: Clock) -> None:
    clock.now = datetime.now(UTC)
    seed_metrics(database_url, clock.now)

    found = samples(get(endpoint + "/metrics")[2])

    health = {dict(labels)["container"]: value for (name, labels), value in found.items()
              if name == "aegis_container_health"}
    # starting: the probe has not decided; stopped: nothing to probe; skipped: ignored
    assert health == {"web": 1, "db": 0, "queue": 0, "cache": 0, "plain": -1}
    assert {dict(labels)["host"] for (name, labels) in found
            if name == "aegis_container_health"} == {"test-host"}


def test_open_incidents_count_by_phase_with_a_folded_dependant_in_its_parents(
        settings: Settings, database_url: str, endpoint: str, clock: Clock) -> None:
    clock.now = datetime.now(UTC)
    seed_metrics(database_url, clock.now)

    found = samples(get(endpoint + "/metrics")[2])

    def incidents(phase: str) -> float:
        return found[("aegis_incidents_open", (("host", "test-host"), ("phase", phase)))]

    # queue, with cache folded into it; other-host's escalation is its own aegis's to tell
    assert incidents("escalated") == 1
    assert incidents("striking") == 1
    assert incidents("restarting") == 0


def test_jobs_and_peers_show_what_an_alert_rule_needs(
        settings: Settings, database_url: str, endpoint: str, clock: Clock) -> None:
    clock.now = datetime.now(UTC)
    seed_metrics(database_url, clock.now)

    found = samples(get(endpoint + "/metrics")[2])

    last = {dict(labels)["job"]: dict(labels)["status"] for (name, labels), value
            in found.items() if name == "aegis_job_last_run_status" and value == 1}
    # a skipped slot is not an outcome: health_check's latest is its ok run
    assert last == {"health_check": "ok", "morning_status": "timeout", "backup": "missed",
                    "report": "failed"}
    silent = {dict(labels)["job"]: value for (name, labels), value in found.items()
              if name == "aegis_job_silent"}
    assert silent == {"health_check": 0, "morning_status": 0, "backup": 1, "report": 0}
    hosts = {dict(labels)["host"]: value for (name, labels), value in found.items()
             if name == "aegis_host_silent"}
    # gone-host stopped cleanly: not silent, however old its heartbeat
    assert hosts == {"test-host": 0, "old-host": 1, "gone-host": 0}
    assert found[("aegis_host_heartbeat_age_seconds", (("host", "test-host"),))] \
        == pytest.approx(3.0, abs=1.0)
    assert found[("aegis_host_heartbeat_age_seconds", (("host", "old-host"),))] \
        == pytest.approx(2 * 86400, abs=60)


def test_the_endpoint_answers_while_the_database_is_gone(
        settings: Settings, database_url: str, pg_admin_url: str, endpoint: str,
        clock: Clock) -> None:
    beat(settings, NOW)
    assert samples(get(endpoint + "/metrics")[2])[("aegis_database_up", ())] == 1.0

    drop_database(pg_admin_url, database_url)

    status, _, text = get(endpoint + "/metrics")
    assert status == 200
    found = samples(text)
    assert found[("aegis_database_up", ())] == 0.0
    assert ("aegis_heartbeat_age_seconds", ()) in found
    assert not any(name.startswith("aegis_job_runs") for name, _ in found)
    assert get(endpoint + "/healthz")[0] == 200


def test_a_running_daemon_serves_healthz_and_metrics_until_it_stops(aegis_env: dict[str, str],
                                                                    spawn: Spawner) -> None:
    port = free_port()
    proc = spawn({**aegis_env, "AEGIS_HTTP_ADDR": f"127.0.0.1:{port}",
                  "AEGIS_HEARTBEAT_INTERVAL": "1s"})
    try:
        try:
            wait_for(lambda: healthz_answers(port), 60, "/healthz to answer 200", every_s=0.2)
        except AssertionError as timed_out:
            raise AssertionError(spawn.log_of(proc)) from timed_out
        found = samples(get(f"http://127.0.0.1:{port}/metrics")[2])
        assert found[("aegis_database_up", ())] == 1.0
        assert any(name == "process_resident_memory_bytes" for name, _ in found)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    with pytest.raises(urllib.error.URLError):
        get(f"http://127.0.0.1:{port}/healthz")


@pytest.mark.docker
def test_a_running_daemon_tells_healthy_unhealthy_and_unprobed_containers_apart(
        aegis_env: dict[str, str], spawn: Spawner, make_container: Callable[..., Any]) -> None:
    enabled = {"aegis.enable": "true"}
    healthy = make_container(HEALS, healthcheck=HEALTHCHECK, labels=enabled)
    unhealthy = make_container(IDLE, healthcheck=FAILS, labels=enabled)
    unprobed = make_container(IDLE, healthcheck=None, labels=enabled)
    port = free_port()
    # observe: struck, never restarted, so the unhealthy one stays so
    proc = spawn({**supervising_env(aegis_env, AEGIS_DOCKER_SCOPE="labeled",
                                    AEGIS_HTTP_ADDR=f"127.0.0.1:{port}"),
                  "AEGIS_REMEDIATION": "observe"})
    wanted = {healthy.name: 1.0, unhealthy.name: 0.0, unprobed.name: -1.0}

    def health() -> dict[str, float]:
        try:
            found = samples(get(f"http://127.0.0.1:{port}/metrics")[2])
        except OSError:
            return {}
        return {dict(labels)["container"]: value for (name, labels), value in found.items()
                if name == "aegis_container_health" and dict(labels)["container"] in wanted}

    try:
        wait_for(lambda: health() == wanted, 60, "the three health values")
    except AssertionError as timed_out:
        raise AssertionError(f"{health()}\n{spawn.log_of(proc)}") from timed_out


def test_a_taken_port_is_retried_until_it_frees_up(settings: Settings, app: api.Aegis) -> None:
    port = free_port()
    blocker = socket.create_server(("127.0.0.1", port))
    service_settings = dataclasses.replace(settings, http_addr=f"127.0.0.1:{port}")
    service_app = api.Aegis(service_settings, app.db)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(service_app, stop, 0.05), daemon=True)
    thread.start()
    try:
        beat(settings, datetime.now(UTC))
        with pytest.raises(TimeoutError):  # the blocker never answers
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
        assert thread.is_alive()
        blocker.close()
        wait_for(lambda: healthz_answers(port), 10, "/healthz to answer 200", every_s=0.05)
    finally:
        blocker.close()
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
