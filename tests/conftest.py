"""Shared fixtures: a real PostgreSQL (embedded pgserver, or AEGIS_TEST_DATABASE_URL), a
fresh database per test copied from a migrated template, and a real Docker engine.

Docker tests skip with a reason when no engine is reachable, except when
AEGIS_REQUIRE_DOCKER=1 (CI sets it): then a missing engine fails them. Tests that let aegis
restart containers on the shared engine also need it to themselves (``engine_to_ourselves``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from aegis import api
from aegis.core.config import Settings, load_settings
from aegis.storage.db import Database
from tests import hygiene
from tests import pgbouncer as pgbouncer_tool
from tests.fakes.discord_server import FakeDiscord
from tests.images import PROXY_SCRIPT, build_busybox

if TYPE_CHECKING:
    from tests.faults.procs import Spawner  # which imports this module

TEMPLATE_DB = "aegis_test_template"


@pytest.fixture(scope="session", autouse=True)
def host_as_found() -> Iterator[None]:
    """The session leaves the machine as it found it (tests/hygiene.py): docker0 still
    there when it was, no network namespace, container, network, volume or image left
    behind but the cached aegis-test images."""
    client = hygiene.client_or_none()
    before = hygiene.take(client)
    yield
    found = hygiene.leftovers(before, hygiene.take(client))
    if client is not None:
        client.close()
    if found:
        pytest.fail("the test session left this machine changed:\n  " + "\n  ".join(found),
                    pytrace=False)


def _admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A superuser DSN of a real PostgreSQL server for the whole test session."""
    configured = os.environ.get("AEGIS_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    # A short path keeps the unix socket inside pgdata (socket paths max out at 107 bytes).
    pgdata = Path(f"/tmp/aegis-test-pg-{os.getpid()}")
    server = pgserver.get_server(pgdata, cleanup_mode="delete")  # type: ignore[attr-defined]
    yield server.get_uri()


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    url = make_conninfo(pg_admin_url, dbname=TEMPLATE_DB)
    db = Database(url)
    try:
        db.migrate()
    finally:
        db.close()
    return url


def create_database(pg_admin_url: str, template: str | None = TEMPLATE_DB) -> str:
    name = f"aegis_test_{uuid.uuid4().hex[:12]}"
    with _admin(pg_admin_url) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(pg_admin_url, dbname=name)


def drop_database(pg_admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with _admin(pg_admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    url = create_database(pg_admin_url)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    url = create_database(pg_admin_url, template=None)
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def aegis_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture
def aegis_env(database_url: str, aegis_home: Path, tmp_path: Path) -> dict[str, str]:
    """Environment variables of an aegis process on this test's database."""
    return {
        "AEGIS_DATABASE_URL": database_url,
        "AEGIS_HOME": str(aegis_home),
        "AEGIS_JOURNAL_DIR": str(tmp_path / "journal"),
        "AEGIS_HOST": "test-host",
        "AEGIS_LOG_FORMAT": "json",
        "AEGIS_HTTP_ADDR": "off",
    }


@pytest.fixture
def settings(aegis_env: dict[str, str]) -> Settings:
    return load_settings(aegis_env)


@pytest.fixture
def app(settings: Settings) -> Iterator[api.Aegis]:
    with api.connect(settings, migrate=False) as opened:
        yield opened


def clean_environ(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without any aegis, Postgres or webhook variable, plus ``extra``."""
    prefixes = ("AEGIS_", "POSTGRES_", "DISCORD_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``aegis`` command as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "aegis", *args], env=clean_environ(env), capture_output=True,
        text=True, timeout=timeout, input=input_text, check=False,
    )


# --- PgBouncer ---


@pytest.fixture(scope="session")
def pgbouncer(pg_admin_url: str) -> Iterator[pgbouncer_tool.PgBouncer]:
    """Debian's PgBouncer in transaction mode in front of the session's server, or a skip
    (a failure when AEGIS_REQUIRE_DOCKER=1, which CI sets: ensure_docker.sh installs it)."""
    reason = pgbouncer_tool.unavailable()
    if reason:
        if os.environ.get("AEGIS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"AEGIS_REQUIRE_DOCKER=1 but {reason}")
        pytest.skip(reason)
    folder = Path(f"/tmp/aegis-test-pgb-{os.getpid()}")  # one the server's user may read
    bouncer = pgbouncer_tool.start(pg_admin_url, folder)
    yield bouncer
    bouncer.stop()


# --- Docker ---


def _docker_client() -> Any:
    import docker

    client = docker.from_env(timeout=10)
    client.ping()
    return client


def engine_socket() -> Path | None:
    """The unix socket of the engine at DOCKER_HOST (default /var/run/docker.sock), as the
    engine's own host sees it; None for an engine over TCP."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else None


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of a real Docker engine, or a skip (a failure when AEGIS_REQUIRE_DOCKER=1)."""
    try:
        client = _docker_client()
    except Exception as exc:
        if os.environ.get("AEGIS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"AEGIS_REQUIRE_DOCKER=1 but no Docker engine is reachable: {exc}")
        pytest.skip(f"no Docker engine reachable ({exc}); start dockerd to run this test")
    yield client
    client.close()


def foreign_containers(client: Any) -> list[str]:
    """Running containers on the engine that aegis could act on (they have a health check)
    and that the test suite did not make (no ``aegis.test`` label)."""
    import docker.errors

    foreign = []
    for summary in client.api.containers(filters={"status": "running"}):
        if "aegis.test" in (summary.get("Labels") or {}):
            continue
        with contextlib.suppress(docker.errors.NotFound):  # gone meanwhile
            config = client.api.inspect_container(summary["Id"])["Config"]
            probe = (config.get("Healthcheck") or {}).get("Test") or ["NONE"]
            if probe[0] != "NONE":
                foreign.append(summary["Names"][0].lstrip("/"))
    return sorted(foreign)


@pytest.fixture
def engine_to_ourselves(docker_client: Any) -> None:
    """For tests that let aegis restart containers on the shared engine: they run only when
    no container there but the suite's own has a health check, so a developer's own
    containers are never restarted by ``make test``. Otherwise they skip with the names
    (fail under AEGIS_REQUIRE_DOCKER=1)."""
    foreign = foreign_containers(docker_client)
    if not foreign:
        return
    reason = (f"the Docker engine runs {len(foreign)} health-checked container(s) the tests "
              f"did not make ({', '.join(foreign[:5])}); these tests restart containers, "
              "so they run only on an engine of their own: point DOCKER_HOST at a "
              "dedicated dockerd (see DEVELOPERS.md)")
    if os.environ.get("AEGIS_REQUIRE_DOCKER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def socket_proxy(docker_client: Any, tmp_path: Path
                 ) -> Iterator[Callable[[dict[str, str]], str]]:
    """The socket proxy stand-in (tests/images/socket_proxy/proxy.py) as a process on this
    host in front of the suite's engine: ``start(environ)`` runs one with that allow-list
    and returns its tcp:// URL; each one's log is ``proxy-PORT.log`` in tmp_path."""
    engine = engine_socket()
    if engine is None:
        pytest.skip("the engine is reached over TCP: no socket for the proxy to relay to")
    started: list[subprocess.Popen[bytes]] = []

    def start(environ: dict[str, str]) -> str:
        port = free_port()
        with open(tmp_path / f"proxy-{port}.log", "wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-u", str(PROXY_SCRIPT)], stdout=log, stderr=log,
                env={"PATH": os.environ.get("PATH", ""), **environ,
                     "SOCKET_PATH": str(engine), "PROXY_PORT": str(port)}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                return f"tcp://127.0.0.1:{port}"
            time.sleep(0.05)
        raise AssertionError(f"the socket proxy stand-in did not listen on {port}")

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """A tiny local image, FROM scratch with the static busybox, built once per session."""
    try:
        return build_busybox(docker_client)
    except FileNotFoundError as exc:
        pytest.fail(str(exc))


def sql_rows(url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    """Read the database as an operator would, with plain SQL."""
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()


def have_psql() -> bool:
    return shutil.which("psql") is not None


# Fixtures shared by the tests that run real daemons or talk to the Discord-like server.

@pytest.fixture
def spawn() -> Iterator[Spawner]:
    """Starts ``aegis`` processes; stops every one left running at the end."""
    from tests.faults.procs import Spawner

    spawner = Spawner()
    yield spawner
    spawner.stop_all()


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    """The local Discord-like server (tests/fakes/discord_server.py)."""
    server = FakeDiscord()
    yield server
    server.close()


@pytest.fixture
def make_app(aegis_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., api.Aegis]]:
    """``make(host, **env)``: an app on the session's database as that host (not
    migrated again); every one made is closed at the end."""
    opened: list[api.Aegis] = []

    def make(host: str, **extra: str) -> api.Aegis:
        env = {**aegis_env, "AEGIS_HOST": host, "AEGIS_HOME": str(tmp_path / host), **extra}
        app = api.connect(load_settings(env), migrate=False)
        opened.append(app)
        return app

    yield make
    for app in opened:
        app.close()
