"""The container image, built from this repository's Dockerfile and run for real.

No image registry is reachable here, so the base is built locally (tests/build_base_image.sh:
debootstrap + ``docker import``, cached by tag) and passed as the BASE build argument; pip
installs from a wheelhouse built on the host, so the build downloads nothing. The container
runs on the host network (this engine may have no bridge) and reaches the test database
through a TCP relay to its unix socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import sql_rows

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "aegis-base:bookworm-python3"
IMAGE = "aegis-image-test:latest"
DOCKER_SOCKET = Path("/var/run/docker.sock")

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The local stand-in for python:3.11-slim, built once per machine."""
    try:
        docker_client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except Exception:  # docker.errors.ImageNotFound
        pass
    if shutil.which("debootstrap") is None:
        pytest.skip("no base image and no debootstrap to build one "
                    "(apt-get install debootstrap, or docker tag python:3.11-slim "
                    f"{BASE_IMAGE})")
    result = subprocess.run(["bash", str(ROOT / "tests" / "build_base_image.sh"), BASE_IMAGE],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr
    return BASE_IMAGE


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Wheels of aegis's dependencies, built on the host once per pyproject.toml."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    folder = Path(f"/tmp/aegis-wheelhouse-{digest}")
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder),
             str(ROOT), "setuptools>=68", "wheel"],
            capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def aegis_image(docker_client: Any, base_image: str, wheelhouse: Path,
                tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image built from the Dockerfile, with only the files a checkout has."""
    context = tmp_path_factory.mktemp("image-context")
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, context / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("aegis", "jobs"):
        shutil.copytree(ROOT / package, context / package, ignore=ignore)
    shutil.copytree(wheelhouse, context / "wheelhouse")
    docker_client.images.build(path=str(context), tag=IMAGE, rm=True, forcerm=True,
                               network_mode="host", buildargs={"BASE": base_image})
    return IMAGE


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
    socket_gid = DOCKER_SOCKET.stat().st_gid
    container = docker_client.containers.run(
        aegis_image, detach=True, network_mode="host",
        environment={"AEGIS_DATABASE_URL": container_dsn, "AEGIS_HOST": "image-test",
                     "AEGIS_HTTP_ADDR": f"127.0.0.1:{http_port}",
                     "AEGIS_HEARTBEAT_INTERVAL": "2s", "AEGIS_SHUTDOWN_GRACE": "5s",
                     # zones from the tzdata package aegis installs, as on a base image
                     # without /usr/share/zoneinfo
                     "AEGIS_TIMEZONE": "Europe/Berlin", "PYTHONTZPATH": "/no/zoneinfo"},
        volumes={str(DOCKER_SOCKET): {"bind": "/var/run/docker.sock", "mode": "rw"}},
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

        code, output = container.exec_run(["aegis", "jobs", "list", "--json"])
        assert code == 0, output.decode()
        morning = next(job for job in json.loads(output) if job["id"] == "morning_status")
        assert (morning["trigger"], morning["timezone"]) == ("daily at 06:00 Europe/Berlin",
                                                             "Europe/Berlin")

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
        container.remove(force=True)
