"""The events watcher against a real engine, reached through a unix-socket proxy the
test controls: dropping the proxy is the engine going away, restoring it is the engine
coming back."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from aegis import api
from aegis.supervision.watcher import Watcher
from tests.conftest import sql_rows
from tests.integration.test_supervisor_protocol import (
    HEALS,
    make_container,  # noqa: F401  (fixture)
    make_unhealthy,
    wait_health,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine_to_ourselves")]
ENGINE_SOCKET = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


class SocketProxy:
    """Forwards a unix socket to the Docker engine's; ``drop`` cuts every connection and
    stops listening, ``start`` listens again. ``hold(text)`` keeps every request whose
    first line holds ``text`` until ``release()``: an engine slow to answer it (as Docker
    is to an inspect of a container it is stopping)."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._held: bytes | None = None
        self.holding = threading.Event()  # a held request arrived
        self._released = threading.Event()

    def hold(self, text: str) -> None:
        self._released.clear()
        self._held = text.encode()

    def release(self) -> None:
        self._held = None
        self._released.set()

    def _forward(self, data: bytes) -> None:
        """Called with each chunk a client sends, before it goes on to the engine."""
        held = self._held
        if held is not None and held in data.split(b"\r\n", 1)[0]:
            self.holding.set()
            self._released.wait(60)

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def drop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink, seen in ((client, upstream, self._forward),
                                       (upstream, client, None)):
                threading.Thread(target=_pump, args=(source, sink, seen),
                                 daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket,
          seen: Callable[[bytes], None] | None) -> None:
    try:
        while data := source.recv(65536):
            if seen is not None:
                seen(data)
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy(docker_client: Any) -> Iterator[SocketProxy]:
    if not ENGINE_SOCKET.startswith("unix://"):
        pytest.skip("the proxy forwards a unix socket; DOCKER_HOST is not one")
    path = Path(f"/tmp/aegis-proxy-{uuid.uuid4().hex[:8]}.sock")
    proxied = SocketProxy(path, ENGINE_SOCKET.removeprefix("unix://"))
    proxied.start()
    yield proxied
    proxied.drop()


@contextlib.contextmanager
def running_watcher(app: api.Aegis, **options: Any) -> Iterator[Watcher]:
    """A watcher in a thread of its own, connected; stopped (and joined) afterwards."""
    running = Watcher(app, own_ids=frozenset(), **options)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    assert running.connected.wait(10), "the watcher did not connect"
    yield running
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


@pytest.fixture
def watcher(app: api.Aegis, proxy: SocketProxy) -> Iterator[Watcher]:
    def client() -> Any:
        return docker.DockerClient(base_url=f"unix://{proxy.path}", timeout=5)

    with running_watcher(app, client_factory=client) as running:
        yield running


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until ``predicate`` held; fails after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s}s")


def count(url: str, event_type: str, container: str | None = None) -> int:
    rows = sql_rows(url, "SELECT count(*) AS n FROM episodic_memory WHERE event_type = %s "
                    "AND (%s::text IS NULL OR details->>'container' = %s)",
                    event_type, container, container)
    return int(rows[0]["n"])


def test_an_unhealthy_event_is_struck_at_once(
        watcher: Watcher, docker_client: Any, make_container: Callable[..., Any],  # noqa: F811
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
        make_container: Callable[..., Any], database_url: str) -> None:  # noqa: F811
    """Strike 2 of ``first`` waits on an inspect the engine does not answer; the strike 1
    of ``second``'s event, meanwhile, is recorded all the same (checks run off the loop)."""
    app = make_app("slow-inspect", AEGIS_STRIKE_INTERVAL="1s")
    first, second = make_container(HEALS), make_container(HEALS)
    wait_health(docker_client, second, "healthy")

    def client() -> Any:
        return docker.DockerClient(base_url=f"unix://{proxy.path}", timeout=90)

    with running_watcher(app, client_factory=client):
        try:
            make_unhealthy(docker_client, first)
            wait_for(lambda: count(database_url, "container_unhealthy", first.name) == 1, 5)
            proxy.hold(f"/containers/{first.id}/json")
            wait_for(proxy.holding.is_set, 10)  # its strike 2 is waiting on the engine
            make_unhealthy(docker_client, second)
            wait_for(lambda: count(database_url, "container_unhealthy", second.name) == 1,
                     10)
            # still held: the restart is not made before the inspect is answered
            assert count(database_url, "container_restarted", first.name) == 0
        finally:
            proxy.release()
        wait_for(lambda: count(database_url, "container_restarted", first.name) == 1, 20)


def test_the_stream_reconnects_after_the_engine_goes_away(
        watcher: Watcher, proxy: SocketProxy, docker_client: Any,
        make_container: Callable[..., Any], database_url: str) -> None:  # noqa: F811
    container = make_container(HEALS)
    wait_health(docker_client, container, "healthy")
    proxy.drop()
    wait_for(lambda: not watcher.connected.is_set(), 5)
    wait_for(lambda: count(database_url, "docker_unavailable") == 1, 10)
    # it turns unhealthy while aegis cannot see the engine
    make_unhealthy(docker_client, container)
    time.sleep(3)  # several reconnection attempts fail meanwhile
    proxy.start()
    reconnect_s = wait_for(watcher.connected.is_set, 10)
    assert reconnect_s < 10
    wait_for(lambda: count(database_url, "container_unhealthy", container.name) == 1, 5)
    assert count(database_url, "docker_unavailable") == 1
    assert count(database_url, "docker_available") == 1


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
