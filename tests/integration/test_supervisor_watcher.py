"""The events watcher against a real engine, reached through a unix-socket proxy the
test controls: dropping the proxy is the engine going away, restoring it is the engine
coming back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from aegis import api
from aegis.supervision.watcher import Watcher
from tests.support.containers import HEALS, make_unhealthy, wait_health
from tests.support.rows import count, sql_rows
from tests.support.supervision import SocketProxy, running_watcher
from tests.support.waiting import seconds_until, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]


def proxied(proxy: SocketProxy) -> Callable[[], Any]:
    return lambda: proxy.client(90)


def test_an_unhealthy_event_is_struck_at_once(
        watcher: Watcher, docker_client: Any, make_container: Callable[..., Any],
        database_url: str) -> None:
    container = make_container(HEALS)
    make_unhealthy(docker_client, container)
    wait_for(lambda: count(database_url, "container_unhealthy", container.name) == 1, 5)
    row = sql_rows(database_url, "SELECT state, next_check_at, strike_at FROM containers "
                   "WHERE name = %s", container.name)[0]
    assert row["state"] == "striking"
    assert (row["next_check_at"] - row["strike_at"]).total_seconds() == 60


def test_a_slow_inspect_of_one_container_holds_up_no_strike_of_another(
        make_app: Callable[..., api.Aegis], proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    """Strike 2 of ``first`` waits on an inspect the engine does not answer (the one taken
    ahead of its timer, at once for a 1 s interval); the strike 1 of ``second``'s event,
    meanwhile, is recorded all the same (checks run off the loop)."""
    app = make_app("slow-inspect", AEGIS_STRIKE_INTERVAL="1s")
    first, second = make_container(HEALS), make_container(HEALS)
    wait_health(docker_client, second, "healthy")
    with running_watcher(app, client_factory=proxied(proxy)):
        with proxy.held(f"/containers/{first.id}/json"):
            make_unhealthy(docker_client, first)
            wait_for(lambda: count(database_url, "container_unhealthy", first.name) == 1, 5)
            wait_for(proxy.holding.is_set, 10)  # its strike 2 is waiting on the engine
            time.sleep(1.5)  # its timer is due
            make_unhealthy(docker_client, second)
            wait_for(lambda: count(database_url, "container_unhealthy", second.name) == 1,
                     10)
            # still held: the restart is not made before the inspect is answered
            assert count(database_url, "container_restarted", first.name) == 0
        wait_for(lambda: count(database_url, "container_restarted", first.name) == 1, 20)


@contextlib.contextmanager
def inspected_ahead(app: api.Aegis, proxy: SocketProxy, docker_client: Any, container: Any,
                    database_url: str) -> Iterator[None]:
    """``app``'s watcher (a 5 s strike interval) has struck ``container`` and inspected it
    ahead of its timer (2 s before it falls due), well before the timer; every later
    inspect of it is held until the block ends."""
    with running_watcher(app, client_factory=proxied(proxy)):
        try:
            make_unhealthy(docker_client, container)
            wait_for(lambda: count(database_url, "container_unhealthy", container.name) == 1,
                     5)
            struck_at = time.time()
            due = sql_rows(database_url, "SELECT next_check_at FROM containers "
                           "WHERE name = %s", container.name)[0]["next_check_at"].timestamp()
            inspect = f"/containers/{container.id}/json"
            wait_for(lambda: proxy.asked(inspect, since=struck_at), 10)
            assert proxy.asked(inspect, since=struck_at)[0] < due - 1, "not inspected ahead"
            proxy.hold(inspect)
            yield
        finally:
            proxy.release()


def test_a_strike_2_is_decided_from_the_inspect_taken_ahead_of_its_timer(
        make_app: Callable[..., api.Aegis], proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    """The engine answers no inspect of the container once it was inspected ahead: its
    restart is decided and made all the same, when the timer falls due."""
    container = make_container(HEALS)
    wait_health(docker_client, container, "healthy")
    with inspected_ahead(make_app("ahead", AEGIS_STRIKE_INTERVAL="5s"), proxy,
                         docker_client, container, database_url):
        wait_for(lambda: count(database_url, "container_restarted", container.name) == 1, 15)


def test_an_event_after_the_inspect_ahead_has_the_strike_2_inspect_again(
        make_app: Callable[..., api.Aegis], proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    """A signal the container ignores, sent after its inspect ahead: the ``kill`` event
    makes that inspect stale, so strike 2 waits on an inspect of its own."""
    container = make_container(f"trap '' USR1; {HEALS}")
    wait_health(docker_client, container, "healthy")
    with inspected_ahead(make_app("ahead-stale", AEGIS_STRIKE_INTERVAL="5s"), proxy,
                         docker_client, container, database_url):
        container.kill(signal="SIGUSR1")
        wait_for(proxy.holding.is_set, 10)  # strike 2's own inspect, held
        time.sleep(1)
        assert count(database_url, "container_restarted", container.name) == 0
        proxy.release()
        wait_for(lambda: count(database_url, "container_restarted", container.name) == 1, 15)


def test_a_restart_over_is_judged_once_the_others_under_way_are_made(
        make_app: Callable[..., api.Aegis], proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    """Two containers restarted together; the engine answers ``slow``'s restart only when
    the test says. ``quick``'s restart is over long before, and it is not inspected
    (judged) until ``slow``'s is made: an engine still starting the others of a burst
    starts them later for every request judging the first asks of it."""
    app = make_app("judged-after-others", AEGIS_STRIKE_INTERVAL="1s")
    quick, slow = make_container(HEALS), make_container(HEALS)
    wait_health(docker_client, slow, "healthy")
    inspect = f"/containers/{quick.id}/json"
    with running_watcher(app, client_factory=proxied(proxy)):
        with proxy.held(f"/containers/{slow.id}/restart"):
            make_unhealthy(docker_client, slow)
            make_unhealthy(docker_client, quick)
            wait_for(lambda: count(database_url, "container_restarted", quick.name) == 1, 15)
            wait_for(proxy.holding.is_set, 10)  # slow's restart is under way
            restarted_at = time.time()
            wait_health(docker_client, quick, "healthy")  # its health event has come
            time.sleep(1)  # its strike 3 timer is due, and the loop has polled
            assert proxy.asked(inspect, since=restarted_at) == []
        released_at = time.time()
        wait_for(lambda: proxy.asked(inspect, since=released_at), 10)
        wait_for(lambda: count(database_url, "container_restarted", slow.name) == 1, 15)


def test_the_stream_reconnects_after_the_engine_goes_away(
        watcher: Watcher, proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:
    container = make_container(HEALS)
    wait_health(docker_client, container, "healthy")
    proxy.drop()
    wait_for(lambda: not watcher.connected.is_set(), 5)
    wait_for(lambda: count(database_url, "docker_unavailable") == 1, 10)
    # it turns unhealthy while aegis cannot see the engine
    make_unhealthy(docker_client, container)
    time.sleep(3)  # several reconnection attempts fail meanwhile
    proxy.start()
    reconnect_s = seconds_until(watcher.connected.is_set, 10)
    assert reconnect_s < 10
    wait_for(lambda: count(database_url, "container_unhealthy", container.name) == 1, 5)
    assert count(database_url, "docker_unavailable") == 1
    assert count(database_url, "docker_available") == 1


@pytest.mark.serial  # counts reconnections in a window of real time
def test_an_event_stream_the_proxy_forbids_is_said_once_and_retried_with_back_off(
        app: api.Aegis, socket_proxy: Callable[[dict[str, str]], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-py ends a 403 event stream quietly, as if the engine had closed it: without
    a back-off the watcher reconnected (and swept) twice a second, logging each end."""
    from structlog.testing import capture_logs

    from tests.images import socket_proxy_profile

    url = socket_proxy({**socket_proxy_profile(), "EVENTS": "0"})
    monkeypatch.setenv("DOCKER_HOST", url)  # as the daemon finds its engine

    def through_proxy() -> Any:
        return docker.DockerClient(base_url=url, timeout=5)

    with capture_logs() as logs, running_watcher(app, client_factory=through_proxy):
        time.sleep(7)  # the back-off: reconnects after 0.5, 1 and 2 s, not every 0.5 s
    names = [line["event"] for line in logs]
    assert names.count("docker_events_forbidden") == 1
    forbidden = next(line for line in logs if line["event"] == "docker_events_forbidden")
    assert forbidden["docker_host"] == url
    assert "EVENTS=1" in forbidden["hint"]
    assert "docker_stream_ended" not in names
    assert 2 <= names.count("docker_stream_connected") <= 5
