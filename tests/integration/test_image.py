"""The container image, built from this repository's Dockerfile and run for real.

No image registry is reachable here, so the base is built locally (tests/images: debootstrap
+ ``docker import``, cached by tag) and passed as the BASE build argument; pip installs from
a wheelhouse built on the host, so the build downloads nothing. The container
runs on the host network (this engine may have no bridge) and reaches the test database
through a TCP relay to its unix socket.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests import images
from tests.conftest import engine_socket, sql_rows

IMAGE = "aegis-test-image:session"

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def aegis_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The image built from the Dockerfile, with only the files a checkout has, on the
    local Python root (tests/images); removed after the session."""
    try:
        built = images.build_aegis(docker_client, IMAGE,
                                   images.aegis_context(tmp_path_factory.mktemp("context")))
    except images.ImageError as exc:
        pytest.fail(str(exc))
    yield built.tag
    images.remove_build(docker_client, built)


class UnixRelay:
    """127.0.0.1:PORT -> a unix socket: the container's way to the test database."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            server.connect(self.socket_path)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def container_dsn(database_url: str) -> Iterator[str]:
    """A DSN of this test's database that a container on the host network can use."""
    params = conninfo_to_dict(database_url)
    host = str(params.get("host", ""))
    if not host.startswith("/"):
        yield database_url
        return
    relay = UnixRelay(f"{host}/.s.PGSQL.{params.get('port', 5432)}")
    yield f"postgresql://{params.get('user', 'postgres')}@127.0.0.1:{relay.port}/{params['dbname']}"
    relay.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_health(container: Any, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    status = "none"
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status", "none")
        if status == "healthy" or container.status == "exited":
            break
        time.sleep(0.5)
    return status


def test_the_image_runs_non_root_turns_healthy_and_stops_cleanly(
        docker_client: Any, aegis_image: str, container_dsn: str, database_url: str):
    config = docker_client.images.get(aegis_image).attrs["Config"]
    assert config["User"] == "aegis"
    assert config["StopSignal"] == "SIGTERM"
    assert config["Healthcheck"]["Test"] == ["CMD", "aegis", "check"]
    assert config["Entrypoint"] == ["aegis"]

    http_port = free_port()
    docker_socket = engine_socket()
    if docker_socket is None:
        pytest.skip("the engine is reached over TCP: no socket to mount into the container")
    socket_gid = docker_socket.stat().st_gid
    container = docker_client.containers.run(
        aegis_image, detach=True, network_mode="host",
        environment={"AEGIS_DATABASE_URL": container_dsn, "AEGIS_HOST": "image-test",
                     "AEGIS_HTTP_ADDR": f"127.0.0.1:{http_port}",
                     "AEGIS_HEARTBEAT_INTERVAL": "2s", "AEGIS_SHUTDOWN_GRACE": "5s"},
        volumes={str(docker_socket): {"bind": "/var/run/docker.sock", "mode": "rw"}},
        group_add=[str(socket_gid)],
        # Only the timing is overridden; the test command is the image's own.
        healthcheck={"interval": 1_000_000_000, "timeout": 10_000_000_000, "retries": 3},
    )
    try:
        merged = container.attrs["Config"]["Healthcheck"]
        assert (merged["Test"], merged["Interval"]) == (["CMD", "aegis", "check"], 1_000_000_000)
        status = wait_health(container, timeout_s=120)
        assert status == "healthy", container.logs().decode()[-3000:]
        assert container.attrs["State"]["Health"]["Log"][-1]["Output"].startswith("ok: pid 1")

        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert uid != "0"
        code, output = container.exec_run(["aegis", "doctor", "--json"])
        checks = {c["check"]: c for c in json.loads(output)}
        assert checks["database"]["status"] == "ok", checks
        assert checks["migrations"]["status"] == "ok", checks
        assert checks["docker"]["status"] == "ok", checks  # through the socket's group
        assert checks["daemon"]["status"] == "ok", checks
        assert checks["journal"]["status"] == "ok", checks
        assert code == 0

        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as r:
            assert r.status == 200

        started = time.monotonic()
        container.stop(timeout=30)
        stopped_after_s = time.monotonic() - started
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()[-3000:]
        assert stopped_after_s < 30
        events = sql_rows(database_url, "SELECT event_type FROM episodic_memory "
                          "WHERE host = 'image-test' ORDER BY id")
        assert [e["event_type"] for e in events][-1] == "daemon_stopped"
        assert {"daemon_started", "daemon_stopped"} <= {e["event_type"] for e in events}
    finally:
        container.remove(force=True, v=True)  # and the image's anonymous volumes
